//! route-worker as a real process against dispatch-api: the migration walkthrough, TLS failures
//! in plain sentences, retries that never duplicate a plan, no key in any log, and its own
//! certificate over ACME from pebble.

mod acme;
mod failures;
mod lifecycle;
mod retries;
mod walkthrough;
