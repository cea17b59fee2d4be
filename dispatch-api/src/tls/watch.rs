//! Keeps the TLS material current: polls the files (every `tls.reload_interval_secs`), reloads
//! on SIGHUP, and warns once a day about certificates inside the expiry window. At start and
//! after each change of trust, the key of every stored certificate that a CRL revokes for
//! keyCompromise goes on the deny list, so its other certificates die with it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::ReloadableTls;
use crate::registry::{Change, Registry};

/// Runs until the process ends (the application aborts it on shutdown). `registry` is read
/// after a change of trust, to name the bindings the new CA bundle leaves ambiguous.
pub async fn watch(tls: Arc<ReloadableTls>, registry: Arc<Registry>) {
    let interval = Duration::from_secs(tls.settings.reload_interval_secs.max(1));
    let polling = tls.settings.reload_interval_secs > 0;
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut warned: HashMap<String, Instant> = HashMap::new();
    deny_compromised_keys(&tls, &registry).await;
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<()>();
        let trust_changed = tokio::select! {
            _ = signalled => {
                tracing::info!("SIGHUP: reloading TLS files");
                tls.reload(true)
            }
            _ = tokio::time::sleep(interval) => polling && tls.reload(false),
        };
        if trust_changed {
            warn_ambiguous_bindings(&tls, &registry);
            deny_compromised_keys(&tls, &registry).await;
        }
        tls.publish_expiry();
        warn_expiring(&tls, &mut warned);
    }
}

/// Start-up refuses bindings whose issuer the bundle leaves ambiguous; a new bundle can make
/// them so while serving. They then match nothing (`issuer_not_allowed`): say which, and why.
fn warn_ambiguous_bindings(tls: &ReloadableTls, registry: &Registry) {
    let problems = registry
        .snapshot()
        .ambiguous_issuers(tls.material().trust.issuers());
    for problem in problems {
        tracing::error!(
            binding = problem,
            "after the CA bundle changed, this binding matches no certificate until its issuer's key is pinned"
        );
    }
}

/// Puts on the deny list the key of each stored certificate that a CRL of the current trust
/// revokes for keyCompromise (`Trust::compromised_key`): a renewal that reused the stolen key
/// is refused as `cert_revoked` from the next request on, on open connections too, and on
/// every replica (each one that loads the CRL also finds it; the first one's row counts).
/// Failures are logged and tried again at the next change of trust.
async fn deny_compromised_keys(tls: &ReloadableTls, registry: &Registry) {
    let chains = match registry.presented_chains().await {
        Ok(chains) => chains,
        Err(error) => {
            tracing::error!(error = %error, "cannot read the presented certificates to find keys revoked for keyCompromise");
            return;
        }
    };
    let trust = tls.material().trust.clone();
    // A signature check per stored certificate: off the event loop.
    let found = tokio::task::spawn_blocking(move || {
        chains
            .iter()
            .filter_map(|chain| trust.compromised_key(chain))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for certificate in found {
        if registry.key_denied(&certificate.spki) {
            continue;
        }
        let reason = format!(
            "keyCompromise: certificate {} is revoked for keyCompromise by a CRL",
            certificate.fingerprint
        );
        let change = Change {
            actor: "crl",
            reason: &reason,
            operator: None,
            tryout: None,
        };
        match registry.deny_key(certificate.spki, change).await {
            Ok(_) => tracing::warn!(
                key = %certificate.spki,
                certificate = %certificate.fingerprint,
                subject = %certificate.subject,
                "a CRL revokes this certificate for keyCompromise: every certificate of its key is refused"
            ),
            Err(error) => {
                tracing::error!(error = %error, key = %certificate.spki, "cannot deny a key revoked for keyCompromise")
            }
        }
    }
}

fn warn_expiring(tls: &ReloadableTls, warned: &mut HashMap<String, Instant>) {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    let window = time::Duration::days(tls.settings.expiry_warning_days as i64);
    let now = OffsetDateTime::now_utc();
    let material = tls.material.load();
    let mut items = vec![(
        format!("server certificate {}", material.server_subject),
        material.server_not_after,
    )];
    items.extend(
        material
            .trust
            .cas()
            .iter()
            .map(|ca| (format!("client CA {}", ca.subject), ca.not_after)),
    );
    items.extend(
        tls.metrics
            .client_certificates()
            .into_iter()
            .map(|(client, not_after)| {
                (
                    format!("last certificate of client {client}"),
                    OffsetDateTime::from_unix_timestamp(not_after).unwrap_or(now),
                )
            }),
    );
    for (what, not_after) in items {
        if not_after - now > window {
            continue;
        }
        let due = warned.get(&what).is_none_or(|at| at.elapsed() >= DAY);
        if due {
            tracing::warn!(certificate = what, not_after = %not_after, days_left = (not_after - now).whole_days(), "certificate expires soon");
            warned.insert(what, Instant::now());
        }
    }
}
