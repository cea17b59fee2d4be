//! route-worker as a real process against dispatch-api: the migration walkthrough, TLS failures
//! in plain sentences, retries that never duplicate a plan, and no key in any log.

mod failures;
mod lifecycle;
mod retries;
mod walkthrough;
