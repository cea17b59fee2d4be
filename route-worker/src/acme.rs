//! This worker's certificate over ACME (RFC 8555), from `[tls.acme]`: obtained at start unless
//! the stored one is still good, then renewed before it expires, each time with a new key. The
//! worker proves each name over http-01, answering the CA itself (`acme/http01.rs`, listening
//! from the first order on). A renewal
//! replaces `identity.pem` at once (`acme/state.rs`); the TLS client reloads it and new
//! connections present it, while connections in flight finish with the one they began with.
//!
//! While the CA cannot be reached the current certificate stays in use: each failed attempt is
//! logged with the time it has left, and retried with a backoff bounded by that time.
//!
//! Where the CA offers ACME Renewal Information (RFC 9773), its suggested window decides when
//! (asked again when it says to, so a window it moves ahead, say before a mass revocation, is
//! followed), and the new order names the certificate it replaces.

mod http01;
mod schedule;
mod state;

use std::path::PathBuf;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use crate::configuration::AcmeSettings;
use crate::error::WorkerError;
use schedule::{ask_again_in, attempt_timeout, renewal_at, renewal_time, retry_delay};
pub use state::Held;

/// Attempts at start, when there is no usable certificate yet and the worker cannot run.
const START_ATTEMPTS: u32 = 3;

/// How the order and the certificate are waited for once the challenges are answered.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(45));

/// The ACME side of this worker.
pub struct Acme {
    settings: AcmeSettings,
    challenges: http01::Challenges,
    /// Whether the http-01 responder listens: from the first order on, not before (a `whoami`
    /// beside a running worker uses the stored certificate and needs no port).
    serving: std::cell::Cell<bool>,
    /// Whether the CA answered for the certificate held with its renewal window: then the next
    /// order names that certificate as the one it replaces (RFC 9773 §5).
    renewal_info: std::cell::Cell<bool>,
}

impl Acme {
    /// Starts the http-01 responder and makes sure a certificate is there: the stored one while
    /// it is not due for renewal, a new one otherwise (a stored one that is due but still valid
    /// is used, and renewed by [`Acme::renew_forever`]).
    pub async fn start(settings: AcmeSettings) -> Result<Self, WorkerError> {
        state::prepare(&settings.state_dir).map_err(|e| {
            WorkerError::Config(format!(
                "tls.acme.state_dir `{}`: {e}",
                settings.state_dir.display()
            ))
        })?;
        let acme = Self {
            settings,
            challenges: http01::Challenges::default(),
            serving: Default::default(),
            renewal_info: Default::default(),
        };
        let now = now();
        // A stored certificate for other names (the settings changed) is not this worker's.
        let for_these_names = state::held_names(&acme.settings.identity_file())
            == state::sorted_names(&acme.settings.dns_names);
        match acme.held() {
            Some(held) if held.not_after > now && for_these_names => {
                tracing::info!(
                    fingerprint = held.fingerprint_hex(),
                    not_after = held.not_after,
                    "using the stored ACME certificate"
                );
            }
            _ => {
                let mut failures = 0;
                loop {
                    match acme.attempt(i64::MAX).await {
                        Ok(_) => break,
                        Err(error) if failures + 1 < START_ATTEMPTS => {
                            tracing::warn!(%error, "getting a certificate over ACME failed; retrying");
                            failures += 1;
                            actix_rt::time::sleep(retry_delay(failures, i64::MAX)).await;
                        }
                        Err(error) => {
                            return Err(WorkerError::Transient(format!(
                                "no certificate from the ACME server `{}`: {error}",
                                acme.settings.directory_url
                            )));
                        }
                    }
                }
            }
        }
        Ok(acme)
    }

    /// The certificate held now, if any.
    pub fn held(&self) -> Option<Held> {
        state::held(&self.settings.identity_file())
    }

    /// Renews the certificate when it is due, and again and again, for as long as the worker
    /// runs.
    pub async fn renew_forever(self) {
        loop {
            let Some(held) = self.held() else {
                self.renew_until_done(None).await;
                continue;
            };
            let own = renewal_at(
                held.not_before,
                held.not_after,
                self.settings.renew_before_secs,
                held.jitter(),
            );
            let (window, ask_again) = self.suggested_window().await;
            let validity = (held.not_before, held.not_after);
            let at = renewal_time(own, validity, window, held.jitter());
            let wait = (at - now()).max(0);
            let wait = ask_again.map_or(wait, |again| wait.min(again));
            actix_rt::time::sleep(Duration::from_secs(wait as u64)).await;
            if now() >= at {
                self.renew_until_done(Some(held)).await;
            }
        }
    }

    /// The CA's suggested renewal window for the certificate held (unix seconds) and when to ask
    /// again, where it offers renewal information; no window where it does not, or cannot answer
    /// now (the worker's own rule then stands; asked again in an hour, or a window moved ahead
    /// meanwhile would be missed).
    async fn suggested_window(&self) -> (Option<(i64, i64)>, Option<i64>) {
        const AFTER_A_FAILURE: Option<i64> = Some(3600);
        self.renewal_info.set(false);
        let Some(identifier) = state::held_identifier(&self.settings.identity_file()) else {
            return (None, None);
        };
        let bound = Duration::from_secs(30);
        let Ok(Ok(account)) = tokio::time::timeout(bound, self.account()).await else {
            return (None, AFTER_A_FAILURE);
        };
        match tokio::time::timeout(bound, account.renewal_info(&identifier)).await {
            Ok(Ok((info, retry_after))) => {
                self.renewal_info.set(true);
                let window = &info.suggested_window;
                tracing::info!(
                    start = window.start.unix_timestamp(),
                    end = window.end.unix_timestamp(),
                    "the ACME server suggests when to renew (RFC 9773)"
                );
                (
                    Some((window.start.unix_timestamp(), window.end.unix_timestamp())),
                    Some(ask_again_in(retry_after.as_secs())),
                )
            }
            // Most CAs offer none (Debian's pebble among them): not worth a line each time.
            Ok(Err(instant_acme::Error::Unsupported(_))) => (None, None),
            Ok(Err(error)) => {
                tracing::warn!(%error, "no renewal information from the ACME server this time");
                (None, AFTER_A_FAILURE)
            }
            Err(_) => (None, AFTER_A_FAILURE),
        }
    }

    /// Attempts until one succeeds, keeping `held` in use meanwhile.
    async fn renew_until_done(&self, held: Option<Held>) {
        let mut failures = 0;
        loop {
            // Once expired (or with none), nothing is kept by hurrying: full attempts, and a
            // backoff up to a minute.
            let seconds_left = held.map_or(0, |held| held.not_after - now());
            let time_left = if seconds_left > 0 {
                seconds_left
            } else {
                i64::MAX
            };
            match self.attempt(time_left).await {
                Ok(new) => {
                    tracing::info!(
                        fingerprint = new.fingerprint_hex(),
                        not_after = new.not_after,
                        "renewed the certificate over ACME; new connections present it"
                    );
                    return;
                }
                Err(error) => {
                    let seconds_left = held.map_or(0, |held| held.not_after - now());
                    if seconds_left > 0 {
                        tracing::warn!(
                            %error,
                            seconds_left,
                            "renewing the certificate over ACME failed; the current one stays in use until it expires"
                        );
                    } else {
                        tracing::error!(
                            %error,
                            "renewing the certificate over ACME failed and it has EXPIRED: the server refuses it until a renewal succeeds"
                        );
                    }
                    failures += 1;
                    actix_rt::time::sleep(retry_delay(failures, time_left)).await;
                }
            }
        }
    }

    /// One attempt, bounded by [`attempt_timeout`].
    async fn attempt(&self, seconds_left: i64) -> Result<Held, String> {
        let bound = attempt_timeout(seconds_left);
        match tokio::time::timeout(bound, self.issue()).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "the ACME server did not finish within {} s",
                bound.as_secs()
            )),
        }
    }

    /// An order for every name, each proved over http-01, finalized with a new key, and the
    /// certificate stored.
    async fn issue(&self) -> Result<Held, String> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .settings
            .dns_names
            .iter()
            .map(|name| Identifier::Dns(name.clone()))
            .collect();
        // The certificate this order replaces, where the CA told its renewal window for it.
        let replaces = self
            .renewal_info
            .get()
            .then(|| state::held_identifier(&self.settings.identity_file()))
            .flatten();
        let order = match replaces {
            Some(replaces) => {
                match account
                    .new_order(&NewOrder::new(&identifiers).replaces(replaces))
                    .await
                {
                    // Refused as such (already replaced: an earlier attempt finalized, then
                    // failed to store), or not echoed by the CA: an order of its own.
                    Err(error) => {
                        tracing::info!(%error, "the ACME server took no order naming the certificate it replaces; ordering without");
                        account.new_order(&NewOrder::new(&identifiers)).await
                    }
                    order => order,
                }
            }
            None => account.new_order(&NewOrder::new(&identifiers)).await,
        };
        let mut order = match order {
            Ok(order) => order,
            Err(error) => {
                // The CA forgot the account (pebble does at every restart): a new one next time.
                if is_problem(&error, "accountDoesNotExist") {
                    let _ = std::fs::remove_file(self.account_file());
                }
                return Err(format!("new order: {error}"));
            }
        };
        self.serve_challenges()?;
        let mut answered = http01::Answered::new(&self.challenges);
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|e| format!("authorization: {e}"))?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                status => return Err(format!("an authorization is {status:?}")),
            }
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or("the ACME server offers no http-01 challenge")?;
            answered.answer(
                challenge.token.clone(),
                challenge.key_authorization().as_str().to_owned(),
            );
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("challenge: {e}"))?;
        }
        let status = order
            .poll_ready(&POLL)
            .await
            .map_err(|e| format!("waiting for validation: {e}"))?;
        if status != OrderStatus::Ready {
            let why = order.state().error.as_ref().map(ToString::to_string);
            return Err(format!(
                "the order is {status:?} after validation{}",
                why.map(|why| format!(": {why}")).unwrap_or_default()
            ));
        }
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| format!("finalize: {e}"))?;
        let chain_pem = order
            .poll_certificate(&POLL)
            .await
            .map_err(|e| format!("certificate: {e}"))?;
        state::store_identity(
            &self.settings.identity_file(),
            &key_pem,
            &chain_pem,
            &self.settings.dns_names,
        )
    }

    fn serve_challenges(&self) -> Result<(), String> {
        if !self.serving.get() {
            http01::serve(&self.settings.http01_listen, self.challenges.clone())
                .map_err(|e| e.to_string())?;
            self.serving.set(true);
        }
        Ok(())
    }

    fn account_file(&self) -> PathBuf {
        self.settings.state_dir.join("account.json")
    }

    /// The stored account, or a new one (stored for the next renewal).
    async fn account(&self) -> Result<Account, String> {
        let builder = || {
            Account::builder_with_root(&self.settings.ca_file).map_err(|e| {
                format!(
                    "tls.acme.ca_file `{}`: {e}",
                    self.settings.ca_file.display()
                )
            })
        };
        // An account is the CA's: one stored for another directory (the settings changed) is
        // not used there.
        let stored = std::fs::read(self.account_file())
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .filter(|stored| stored["directory"] == self.settings.directory_url.as_str())
            .and_then(|stored| serde_json::from_value::<AccountCredentials>(stored).ok());
        if let Some(credentials) = stored {
            return builder()?
                .from_credentials(credentials)
                .await
                .map_err(|e| format!("the ACME directory: {e}"));
        }
        let (account, credentials) = builder()?
            .create(
                &NewAccount {
                    contact: &[],
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.settings.directory_url.clone(),
                None,
            )
            .await
            .map_err(|e| format!("new account: {e}"))?;
        let text = serde_json::to_vec(&credentials).map_err(|e| e.to_string())?;
        state::write_private(&self.account_file(), &text)
            .map_err(|e| format!("cannot store the ACME account: {e}"))?;
        Ok(account)
    }
}

/// Whether `error` is the ACME problem `kind` (`urn:ietf:params:acme:error:{kind}`).
fn is_problem(error: &instant_acme::Error, kind: &str) -> bool {
    matches!(error, instant_acme::Error::Api(problem)
        if problem.r#type.as_deref() == Some(&format!("urn:ietf:params:acme:error:{kind}")))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
