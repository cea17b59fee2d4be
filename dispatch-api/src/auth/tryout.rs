//! A registry change tried before it is made (docs/security-model.md, "How a certificate is
//! bound to a client"): the real [`authenticate`] runs on the
//! registry as it would be, against the certificates that are in use. Those are the operator's
//! own (the one this admin call came with) and every chain each client presented that is still
//! valid or was presented within the evidence window (the latest of each of its instances), as
//! stored by whichever replica saw it, refused ones included (`storage::recorder`'s evidence). A change that would
//! let one of them in as another client, or make it ambiguous, is refused (`force` never
//! overrides that); one that would keep it out is refused unless keeping it out is what the
//! change is for. Whose a certificate is comes from the bindings, so a client refused now for
//! another reason (disabled, its mode) still cannot have its certificate captured meanwhile.
//!
//! Why not a static overlap check alone: bindings overlap in ways only a certificate shows. A
//! CN binding and a SPIFFE binding of one issuer name different things, until a certificate
//! carries both (route-worker's does); a fingerprint pin overlaps whatever that certificate's
//! name binds. The evidence is the certificate itself.

use std::sync::Arc;

use actix_web::http::header::HeaderMap;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::{ReasonCode, authenticate};
use crate::identity::{ConnectionIdentity, PeerCertificate, VerifiedCertificate};
use crate::registry::{ClientName, Intent, RegistryError, RegistrySnapshot, Tryout};
use crate::tls::{Trust, chain_key};

/// What a change does to one certificate that lets `owner` in now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It still lets `owner` in, or keeping it out is the point of the change.
    Kept,
    /// It would let the certificate in as another client, or as none for being ambiguous.
    Captured(String),
    /// It would keep the certificate out, and that is not what the change is for.
    CutOff(String),
}

/// The rule, pure: `after` is what `authenticate` answers for the certificate on the registry
/// as the change would leave it. Keeping a certificate out is the point of a revocation (but
/// never for the operator's own, which would lock the operator out), of a mode change or a
/// disable of its own client (the last-admin rule guards the operator's), and of a forced
/// change of its own client's bindings.
pub fn judge(
    owner: &ClientName,
    after: Result<&ClientName, ReasonCode>,
    intent: Intent<'_>,
    operator: bool,
) -> Verdict {
    let reason = match after {
        Ok(client) if client == owner => return Verdict::Kept,
        Ok(other) => return Verdict::Captured(format!("it would authenticate as `{other}`")),
        Err(ReasonCode::CertAmbiguous) => {
            return Verdict::Captured("it would match two clients (cert_ambiguous)".into());
        }
        Err(reason) => reason,
    };
    let intended = match intent {
        Intent::Revocation => !operator,
        Intent::Switch(client) => client == owner,
        Intent::Bindings { client, force } => client == owner && force,
        Intent::Register => false,
    };
    if intended {
        Verdict::Kept
    } else {
        Verdict::CutOff(format!("refused as {}", reason.as_str()))
    }
}

/// One certificate in use.
struct Live {
    certificate: Arc<VerifiedCertificate>,
    /// The operator's own, presented with this admin call.
    operator: bool,
}

/// The certificates in use, and the trust to authenticate them under, for [`Tryout`].
pub struct LiveCertificates {
    trust: Arc<Trust>,
    live: Vec<Live>,
    now: OffsetDateTime,
}

impl LiveCertificates {
    /// The operator's certificate and the chains clients presented (leaf first, DER),
    /// each verified again under the current trust at a time inside its own validity (a chain
    /// verified in a recent handshake is taken as it was). A chain that no longer verifies
    /// lets nobody in, so no change can take it from anybody: it is left out.
    pub fn new(
        trust: Arc<Trust>,
        operator: Option<Arc<VerifiedCertificate>>,
        presented: impl IntoIterator<Item = Vec<Vec<u8>>>,
        now: OffsetDateTime,
    ) -> Self {
        let mut live: Vec<Live> = operator
            .into_iter()
            .map(|certificate| Live {
                certificate,
                operator: true,
            })
            .collect();
        let presented: Vec<Vec<Vec<u8>>> = presented.into_iter().collect();
        live.extend(
            verify_all_again(&trust, &presented, now)
                .into_iter()
                .map(|certificate| Live {
                    certificate,
                    operator: false,
                }),
        );
        Self { trust, live, now }
    }
}

/// Chains verified by one thread at least: fewer are verified on the calling thread alone.
const CHAINS_PER_THREAD: usize = 512;

/// Each chain verified again, those that no longer verify left out, in order. Tens of
/// thousands of chains never seen under this trust (the first change after a start or a new
/// CA bundle) are verified on every core: a signature check each, about a second on one core
/// for twenty thousand.
fn verify_all_again(
    trust: &Trust,
    presented: &[Vec<Vec<u8>>],
    now: OffsetDateTime,
) -> Vec<Arc<VerifiedCertificate>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(presented.len() / CHAINS_PER_THREAD).max(1);
    let verify = |part: &[Vec<Vec<u8>>]| -> Vec<Arc<VerifiedCertificate>> {
        part.iter()
            .filter_map(|chain| verify_again(trust, chain, now))
            .collect()
    };
    if threads == 1 {
        return verify(presented);
    }
    std::thread::scope(|scope| {
        let parts: Vec<_> = presented
            .chunks(presented.len().div_ceil(threads))
            .map(|part| scope.spawn(move || verify(part)))
            .collect();
        parts
            .into_iter()
            // A panic verifying a chain is the admin call's (a 500), never a chain left out.
            .flat_map(|part| {
                part.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn verify_again(
    trust: &Trust,
    chain: &[Vec<u8>],
    now: OffsetDateTime,
) -> Option<Arc<VerifiedCertificate>> {
    let (leaf, intermediates) = chain.split_first()?;
    let key = chain_key(leaf, intermediates);
    if let Some(verified) = trust.recall_tried(&key) {
        return Some(verified);
    }
    let parsed = PeerCertificate::from_der(leaf).ok()?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    let verified = trust
        .verify_within_validity(
            &parsed,
            &CertificateDer::from(leaf.as_slice()),
            &intermediates,
            now,
        )
        .ok()?;
    // The next change (on this replica, under this trust) need not verify it again; the
    // handshakes' paths are left alone (filling them would clear them).
    trust.remember_tried(key, verified.clone());
    Some(verified)
}

/// A certificate as an operator recognises it: its subject and fingerprint.
fn describe(certificate: &VerifiedCertificate) -> String {
    format!(
        "`{}`, SHA-256 {}",
        certificate.leaf.subject, certificate.leaf.fingerprint
    )
}

impl Tryout for LiveCertificates {
    fn check(
        &self,
        now: &RegistrySnapshot,
        will_be: &RegistrySnapshot,
        intent: Intent<'_>,
    ) -> Result<(), RegistryError> {
        let headers = HeaderMap::new();
        let issuers = self.trust.issuers();
        for live in &self.live {
            let connection = ConnectionIdentity::Certificate(live.certificate.clone());
            // Whose it is, by its bindings: a client refused now for another reason (disabled,
            // its mode) still owns its certificate, and must not find it taken when it is let
            // in again.
            let Ok(owner) = now.client_for_certificate(&live.certificate, issuers) else {
                // Bound to nobody (or to two already): there is nothing to take from anybody.
                continue;
            };
            let owner = &owner.name;
            // Who it lets in afterwards (named, as the owner is, to compare).
            let after: Result<ClientName, ReasonCode> =
                if authenticate(now, &self.trust, &connection, &headers, self.now).is_ok() {
                    authenticate(will_be, &self.trust, &connection, &headers, self.now)
                        .map(|principal| principal.client.name.clone())
                        .map_err(|refusal| refusal.reason)
                } else {
                    // Kept out now already: only a capture can do it harm.
                    match will_be.client_for_certificate(&live.certificate, issuers) {
                        Ok(client) => Ok(client.name.clone()),
                        Err(crate::registry::CertMatchFailure::Ambiguous) => {
                            Err(ReasonCode::CertAmbiguous)
                        }
                        Err(_) => Ok(owner.clone()),
                    }
                };
            let certificate = describe(&live.certificate);
            match judge(owner, after.as_ref().map_err(|r| *r), intent, live.operator) {
                Verdict::Kept => {}
                Verdict::Captured(outcome) if live.operator => {
                    return Err(RegistryError::CapturesOwnCertificate {
                        owner: owner.to_string(),
                        certificate,
                        outcome,
                    });
                }
                Verdict::Captured(outcome) => {
                    return Err(RegistryError::CapturesLiveCertificate {
                        owner: owner.to_string(),
                        certificate,
                        outcome,
                    });
                }
                Verdict::CutOff(_) if live.operator && matches!(intent, Intent::Revocation) => {
                    return Err(RegistryError::OwnCertificate {
                        fingerprint: live.certificate.leaf.fingerprint.to_string(),
                    });
                }
                Verdict::CutOff(outcome) => {
                    return Err(RegistryError::CutsOffLiveCertificate {
                        client: owner.to_string(),
                        certificate,
                        outcome,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use super::*;
    use crate::identity::Fingerprint;
    use crate::registry::{CertBinding, CertBindingSpec, Client, MigrationMode, Scope};
    use crate::tls::testing::{CA, TEST_CA, leaf, trust, verified};

    fn name(text: &str) -> ClientName {
        ClientName::parse(text).unwrap()
    }

    #[test]
    fn every_row_of_the_tryout_decision_table() {
        use Verdict::{Captured, CutOff, Kept};
        let (owner, other) = (name("owner"), name("other"));
        let cut = Err(ReasonCode::CertUnmapped);
        let switch_owner = Intent::Switch(&owner);
        let switch_other = Intent::Switch(&other);
        let rebind = |force| Intent::Bindings {
            client: &owner,
            force,
        };
        let rebind_other = Intent::Bindings {
            client: &other,
            force: true,
        };
        let kind = |verdict: Verdict| match verdict {
            Kept => "kept",
            Captured(_) => "captured",
            CutOff(_) => "cut off",
        };
        // (after, intent, operator, expected)
        let rows: Vec<(Result<&ClientName, ReasonCode>, Intent<'_>, bool, &str)> = vec![
            // Still the owner: whatever the change, for anybody.
            (Ok(&owner), Intent::Register, false, "kept"),
            (Ok(&owner), Intent::Revocation, true, "kept"),
            // Another client, or ambiguous: always a capture, whoever asks and whatever for.
            (Ok(&other), Intent::Register, false, "captured"),
            (Ok(&other), rebind(true), false, "captured"),
            (Ok(&other), Intent::Revocation, true, "captured"),
            (
                Err(ReasonCode::CertAmbiguous),
                Intent::Register,
                false,
                "captured",
            ),
            (
                Err(ReasonCode::CertAmbiguous),
                switch_owner,
                true,
                "captured",
            ),
            (
                Err(ReasonCode::CertAmbiguous),
                rebind(true),
                false,
                "captured",
            ),
            // Kept out: the point of a revocation, except of the operator's own certificate.
            (cut, Intent::Revocation, false, "kept"),
            (cut, Intent::Revocation, true, "cut off"),
            // ... of a mode change or disable of its own client, not of another's.
            (Err(ReasonCode::ClientDisabled), switch_owner, false, "kept"),
            (
                Err(ReasonCode::MethodNotAllowed),
                switch_owner,
                true,
                "kept",
            ),
            (
                Err(ReasonCode::ClientDisabled),
                switch_other,
                false,
                "cut off",
            ),
            // ... of a forced rebinding of its own client only.
            (cut, rebind(true), false, "kept"),
            (cut, rebind(false), false, "cut off"),
            (cut, rebind(false), true, "cut off"),
            (cut, rebind_other, false, "cut off"),
            // ... never of a registration.
            (cut, Intent::Register, false, "cut off"),
        ];
        for (after, intent, operator, expected) in rows {
            let verdict = judge(&owner, after, intent, operator);
            assert_eq!(
                kind(verdict.clone()),
                expected,
                "{after:?} {intent:?} operator={operator}: {verdict:?}"
            );
        }
        assert_eq!(
            judge(&owner, Ok(&other), Intent::Revocation, false),
            Captured("it would authenticate as `other`".into())
        );
        assert_eq!(
            judge(&owner, cut, rebind(false), false),
            CutOff("refused as cert_unmapped".into())
        );
    }

    fn binding(spec: CertBindingSpec) -> CertBinding {
        CertBinding::parse(&spec).unwrap()
    }

    fn client(text: &str, scopes: &[Scope], bindings: Vec<CertBinding>) -> Client {
        Client {
            name: name(text),
            mode: MigrationMode::Dual,
            scopes: scopes.iter().copied().collect::<BTreeSet<_>>(),
            disabled: false,
            bindings,
            api_keys: Vec::new(),
        }
    }

    /// `operator` by CN and `worker` by SPIFFE ID, under the test CA; the worker's live
    /// certificate carries both its CN and its SPIFFE ID, as route-worker's does.
    struct World {
        trust: Arc<Trust>,
        snapshot: RegistrySnapshot,
        operator: Arc<VerifiedCertificate>,
        worker: Arc<VerifiedCertificate>,
    }

    fn world() -> World {
        let trust = Arc::new(trust(&[&CA], &[]));
        let operator = verified(&trust, &leaf(&CA, "operator", &[]), &[]).unwrap();
        let worker = verified(
            &trust,
            &leaf(&CA, "route-worker", &["spiffe://d/route-worker"]),
            &[],
        )
        .unwrap();
        let snapshot = RegistrySnapshot::new(
            vec![
                client(
                    "operator",
                    &[Scope::Admin],
                    vec![binding(CertBindingSpec {
                        issuer: Some(TEST_CA.into()),
                        subject_cn: Some("operator".into()),
                        ..Default::default()
                    })],
                ),
                client(
                    "route-worker",
                    &[Scope::PlansSubmit],
                    vec![binding(CertBindingSpec {
                        issuer: Some(TEST_CA.into()),
                        spiffe_id: Some("spiffe://d/route-worker".into()),
                        ..Default::default()
                    })],
                ),
            ],
            HashSet::new(),
        );
        World {
            trust,
            snapshot,
            operator,
            worker,
        }
    }

    impl World {
        /// The live certificates: the operator's, and the worker's as stored (DER chain).
        fn live(&self) -> LiveCertificates {
            LiveCertificates::new(
                self.trust.clone(),
                Some(self.operator.clone()),
                [self.worker.presented.to_vec()],
                OffsetDateTime::now_utc(),
            )
        }

        fn try_adding(&self, added: Client) -> Result<(), RegistryError> {
            let will_be = self.snapshot.with_client(&added.name, Some(added.clone()));
            self.live()
                .check(&self.snapshot, &will_be, Intent::Register)
        }
    }

    #[test]
    fn a_pin_only_registration_of_the_operators_fingerprint_is_refused_as_the_operators_own() {
        let world = world();
        let pin = binding(CertBindingSpec {
            fingerprints: vec![world.operator.leaf.fingerprint.to_string()],
            ..Default::default()
        });
        let error = world
            .try_adding(client("thief", &[Scope::PlansSubmit], vec![pin]))
            .unwrap_err();
        let RegistryError::CapturesOwnCertificate { owner, outcome, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(owner, "operator");
        assert!(outcome.contains("cert_ambiguous"), "{outcome}");
    }

    #[test]
    fn a_cn_registration_over_a_spiffe_bound_clients_live_certificate_is_refused_naming_it() {
        let world = world();
        let by_cn = binding(CertBindingSpec {
            issuer: Some(TEST_CA.into()),
            subject_cn: Some("route-worker".into()),
            ..Default::default()
        });
        let error = world
            .try_adding(client("copycat", &[Scope::PlansSubmit], vec![by_cn]))
            .unwrap_err();
        let RegistryError::CapturesLiveCertificate {
            owner, certificate, ..
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(owner, "route-worker");
        assert!(
            certificate.contains(&world.worker.leaf.fingerprint.to_string()),
            "{certificate}"
        );
        // A CN nobody's live certificate carries is fine.
        let elsewhere = binding(CertBindingSpec {
            issuer: Some(TEST_CA.into()),
            subject_cn: Some("route-worker-2".into()),
            ..Default::default()
        });
        assert!(
            world
                .try_adding(client("next", &[Scope::PlansSubmit], vec![elsewhere]))
                .is_ok()
        );
    }

    #[test]
    fn rebinding_a_client_away_from_its_live_certificate_is_refused_unless_forced() {
        let world = world();
        let worker = name("route-worker");
        let moved = client(
            "route-worker",
            &[Scope::PlansSubmit],
            vec![binding(CertBindingSpec {
                issuer: Some(TEST_CA.into()),
                spiffe_id: Some("spiffe://d/route-worker-v2".into()),
                ..Default::default()
            })],
        );
        let will_be = world.snapshot.with_client(&worker, Some(moved));
        let live = world.live();
        let error = live
            .check(
                &world.snapshot,
                &will_be,
                Intent::Bindings {
                    client: &worker,
                    force: false,
                },
            )
            .unwrap_err();
        assert!(
            matches!(&error, RegistryError::CutsOffLiveCertificate { client, .. } if client == "route-worker"),
            "{error:?}"
        );
        assert!(
            live.check(
                &world.snapshot,
                &will_be,
                Intent::Bindings {
                    client: &worker,
                    force: true,
                },
            )
            .is_ok()
        );
    }

    #[test]
    fn rebinding_the_operators_own_client_away_from_the_operators_certificate_is_a_cut_off() {
        let world = world();
        let operator = name("operator");
        let moved = client(
            "operator",
            &[Scope::Admin],
            vec![binding(CertBindingSpec {
                issuer: Some(TEST_CA.into()),
                subject_cn: Some("operator-2".into()),
                ..Default::default()
            })],
        );
        let will_be = world.snapshot.with_client(&operator, Some(moved));
        let error = world
            .live()
            .check(
                &world.snapshot,
                &will_be,
                Intent::Bindings {
                    client: &operator,
                    force: false,
                },
            )
            .unwrap_err();
        assert!(
            matches!(&error, RegistryError::CutsOffLiveCertificate { client, .. } if client == "operator"),
            "{error:?}"
        );
    }

    #[test]
    fn a_disabled_clients_certificate_cannot_be_captured_while_it_is_kept_out() {
        let world = world();
        let worker = name("route-worker");
        let mut disabled = Client::clone(world.snapshot.client(&worker).unwrap());
        disabled.disabled = true;
        let snapshot = world.snapshot.with_client(&worker, Some(disabled));
        let by_cn = client(
            "copycat",
            &[Scope::PlansSubmit],
            vec![binding(CertBindingSpec {
                issuer: Some(TEST_CA.into()),
                subject_cn: Some("route-worker".into()),
                ..Default::default()
            })],
        );
        let will_be = snapshot.with_client(&name("copycat"), Some(by_cn));
        let error = world
            .live()
            .check(&snapshot, &will_be, Intent::Register)
            .unwrap_err();
        assert!(
            matches!(&error, RegistryError::CapturesLiveCertificate { owner, .. } if owner == "route-worker"),
            "{error:?}"
        );
        // Changing what keeps it out (its bindings, forced) is no capture.
        let mut rebound = Client::clone(snapshot.client(&worker).unwrap());
        rebound.bindings = vec![binding(CertBindingSpec {
            issuer: Some(TEST_CA.into()),
            subject_cn: Some("route-worker-2".into()),
            ..Default::default()
        })];
        let will_be = snapshot.with_client(&worker, Some(rebound));
        for force in [false, true] {
            let intent = Intent::Bindings {
                client: &worker,
                force,
            };
            assert!(
                world.live().check(&snapshot, &will_be, intent).is_ok(),
                "force={force}"
            );
        }
    }

    #[test]
    fn disabling_a_client_keeps_out_its_own_certificate_only() {
        let world = world();
        let worker = name("route-worker");
        let mut disabled = Client::clone(world.snapshot.client(&worker).unwrap());
        disabled.disabled = true;
        let will_be = world.snapshot.with_client(&worker, Some(disabled));
        assert!(
            world
                .live()
                .check(&world.snapshot, &will_be, Intent::Switch(&worker))
                .is_ok()
        );
        let error = world
            .live()
            .check(&world.snapshot, &will_be, Intent::Switch(&name("operator")))
            .unwrap_err();
        assert!(
            matches!(error, RegistryError::CutsOffLiveCertificate { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn a_revocation_may_keep_out_any_certificate_but_the_operators_own() {
        let world = world();
        let live = world.live();
        let worker = world.worker.leaf.fingerprint;
        assert!(
            live.check(
                &world.snapshot,
                &world.snapshot.with_revoked(worker),
                Intent::Revocation
            )
            .is_ok()
        );
        let root = Fingerprint::of_der(&CA.cert_der());
        let error = live
            .check(
                &world.snapshot,
                &world.snapshot.with_revoked(root),
                Intent::Revocation,
            )
            .unwrap_err();
        assert!(
            matches!(&error, RegistryError::OwnCertificate { fingerprint } if *fingerprint == world.operator.leaf.fingerprint.to_string()),
            "{error:?}"
        );
    }

    #[test]
    fn stored_chains_that_no_longer_verify_or_cannot_be_read_are_not_live() {
        let world = world();
        let stranger =
            devpki::CertificateAuthority::new("Stranger", "X", time::Duration::days(1)).unwrap();
        let untrusted = leaf(&stranger, "route-worker", &[]);
        let live = LiveCertificates::new(
            world.trust.clone(),
            None,
            [
                vec![untrusted.der.clone()],
                vec![b"not a certificate".to_vec()],
                vec![],
                world.worker.presented.to_vec(),
            ],
            OffsetDateTime::now_utc(),
        );
        assert_eq!(live.live.len(), 1);
        assert_eq!(
            live.live[0].certificate.leaf.fingerprint,
            world.worker.leaf.fingerprint
        );
        // Verified anew when no recent handshake remembers it: the same path.
        let fresh = Arc::new(trust(&[&CA], &[]));
        let again = verify_again(&fresh, &world.worker.presented, OffsetDateTime::now_utc())
            .expect("it verifies");
        assert_eq!(again.leaf.fingerprint, world.worker.leaf.fingerprint);
        assert_eq!(again.issuer_spki, world.worker.issuer_spki);
        let (leaf, rest) = world.worker.presented.split_first().unwrap();
        let key = chain_key(leaf, rest);
        assert!(
            fresh.recall_tried(&key).is_some(),
            "remembered for the next change"
        );
        assert!(
            fresh.recall(&key).is_none(),
            "not among the handshakes' paths"
        );
    }

    #[test]
    fn many_chains_are_verified_on_every_core_in_order_and_those_that_fail_left_out() {
        let trust = trust(&[&CA], &[]);
        let stranger =
            devpki::CertificateAuthority::new("Other CA", "Other", time::Duration::days(1))
                .unwrap();
        let first = vec![leaf(&CA, "first", &[]).der.clone()];
        let second = vec![leaf(&CA, "second", &[]).der.clone()];
        let other = vec![leaf(&stranger, "other", &[]).der.clone()];
        let count = 3 * CHAINS_PER_THREAD + 7;
        let presented: Vec<Vec<Vec<u8>>> = (0..count)
            .map(|n| match n % 3 {
                0 => other.clone(),
                1 => first.clone(),
                _ => second.clone(),
            })
            .collect();
        let now = OffsetDateTime::now_utc();
        let leaves = |verified: Vec<Arc<VerifiedCertificate>>| -> Vec<Vec<u8>> {
            verified.iter().map(|v| v.presented[0].clone()).collect()
        };
        let verified = leaves(verify_all_again(&trust, &presented, now));
        // The same answer, in the same order, as one chain at a time.
        let alone = leaves(
            presented
                .iter()
                .filter_map(|chain| verify_again(&trust, chain, now))
                .collect(),
        );
        assert_eq!(verified.len(), count - count.div_ceil(3));
        assert_eq!(verified, alone);
        assert_eq!(verified[..2], [first[0].clone(), second[0].clone()]);
        assert_eq!(verify_all_again(&trust, &presented[..5], now).len(), 3);
    }
}
