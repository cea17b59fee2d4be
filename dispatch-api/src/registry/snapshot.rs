//! The registry as the request path sees it: an immutable snapshot, indexed by key hash and by
//! what a certificate names, swapped atomically after each admin write.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{ApiKeyHash, Client, ClientName};
use crate::identity::{Fingerprint, PeerCertificate, SpiffeId};

/// Why a certificate did not identify a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertMatchFailure {
    Revoked,
    /// No binding names this certificate (or its pins exclude it).
    Unmapped,
    /// A binding names it, but expects another issuer.
    IssuerNotAllowed,
}

/// An immutable view of the registry, indexed for the request path.
#[derive(Debug, Default)]
pub struct RegistrySnapshot {
    clients: HashMap<ClientName, Arc<Client>>,
    by_key: HashMap<ApiKeyHash, Arc<Client>>,
    by_cn: HashMap<String, Vec<Arc<Client>>>,
    by_spiffe: HashMap<SpiffeId, Vec<Arc<Client>>>,
    by_fingerprint: HashMap<Fingerprint, Vec<Arc<Client>>>,
    revoked: HashSet<Fingerprint>,
}

impl RegistrySnapshot {
    pub fn new(clients: Vec<Client>, revoked: HashSet<Fingerprint>) -> Self {
        let mut snapshot = Self {
            revoked,
            ..Self::default()
        };
        for client in clients {
            let client = Arc::new(client);
            if let Some(hash) = client.api_key {
                snapshot.by_key.insert(hash, client.clone());
            }
            for binding in &client.bindings {
                if let Some(cn) = &binding.subject_cn {
                    snapshot
                        .by_cn
                        .entry(cn.clone())
                        .or_default()
                        .push(client.clone());
                }
                if let Some(id) = &binding.spiffe_id {
                    snapshot
                        .by_spiffe
                        .entry(id.clone())
                        .or_default()
                        .push(client.clone());
                }
                if binding.subject_cn.is_none() && binding.spiffe_id.is_none() {
                    for pin in &binding.fingerprints {
                        snapshot
                            .by_fingerprint
                            .entry(*pin)
                            .or_default()
                            .push(client.clone());
                    }
                }
            }
            snapshot.clients.insert(client.name.clone(), client);
        }
        snapshot
    }

    pub fn client(&self, name: &ClientName) -> Option<&Arc<Client>> {
        self.clients.get(name)
    }

    pub fn clients(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.clients.values()
    }

    /// The client whose key this is, if any. Looked up by hash (SHA-256 of a long random key, so
    /// the lookup's timing says nothing useful about the key); `matches` compares the stored hash
    /// again in constant time, which keeps the comparison itself free of early exits.
    pub fn client_for_key(&self, hash: &ApiKeyHash) -> Option<&Arc<Client>> {
        self.by_key
            .get(hash)
            .filter(|c| c.api_key.is_some_and(|h| h.matches(hash)))
    }

    /// The client a verified certificate is bound to.
    pub fn client_for_certificate(
        &self,
        cert: &PeerCertificate,
    ) -> Result<&Arc<Client>, CertMatchFailure> {
        if self.revoked.contains(&cert.fingerprint) {
            return Err(CertMatchFailure::Revoked);
        }
        let candidates = cert
            .common_names
            .iter()
            .filter_map(|cn| self.by_cn.get(cn))
            .chain(
                cert.spiffe_ids
                    .iter()
                    .filter_map(|id| self.by_spiffe.get(id)),
            )
            .chain(self.by_fingerprint.get(&cert.fingerprint))
            .flatten();
        let mut failure = CertMatchFailure::Unmapped;
        for client in candidates {
            for binding in client.bindings.iter().filter(|b| b.names(cert)) {
                if binding
                    .issuer
                    .as_ref()
                    .is_some_and(|issuer| *issuer != cert.issuer)
                {
                    failure = CertMatchFailure::IssuerNotAllowed;
                } else if binding.fingerprints.is_empty()
                    || binding.fingerprints.contains(&cert.fingerprint)
                {
                    return Ok(client);
                }
                // Otherwise: named correctly, but not one of the pinned certificates.
            }
        }
        Err(failure)
    }
}
