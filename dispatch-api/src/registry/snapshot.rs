//! The registry as the request path sees it: an immutable snapshot, indexed by key hash and by
//! what a certificate names, swapped atomically after each admin write.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{ApiKeyHash, CertBinding, Client, ClientName, Verdict, first_overlap};
use crate::identity::{Fingerprint, IssuerIndex, VerifiedCertificate};

/// Why a certificate did not identify a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertMatchFailure {
    /// A certificate of its path (leaf, intermediate or anchor) is on the deny list.
    Revoked,
    /// No binding names this certificate (or its pins exclude it).
    Unmapped,
    /// A binding names it, but expects another issuer (name or key).
    IssuerNotAllowed,
    /// It carries several CNs or URI SANs where a binding needs one, or it matches more than
    /// one client: never first-wins.
    Ambiguous,
}

/// An immutable view of the registry, indexed for the request path.
#[derive(Debug, Default)]
pub struct RegistrySnapshot {
    clients: HashMap<ClientName, Arc<Client>>,
    by_key: HashMap<ApiKeyHash, Arc<Client>>,
    by_cn: HashMap<String, Vec<Arc<Client>>>,
    /// By SPIFFE ID as written, to look up each URI SAN of a certificate.
    by_uri: HashMap<String, Vec<Arc<Client>>>,
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
                        .by_uri
                        .entry(id.as_str().to_owned())
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

    /// The one client a verified certificate is bound to.
    pub fn client_for_certificate(
        &self,
        cert: &VerifiedCertificate,
        issuers: &IssuerIndex,
    ) -> Result<&Arc<Client>, CertMatchFailure> {
        if cert.fingerprints().any(|f| self.revoked.contains(f)) {
            return Err(CertMatchFailure::Revoked);
        }
        let leaf = &cert.leaf;
        let candidates = leaf
            .common_names
            .iter()
            .filter_map(|cn| self.by_cn.get(cn))
            .chain(leaf.uri_sans.iter().filter_map(|uri| self.by_uri.get(uri)))
            .chain(self.by_fingerprint.get(&leaf.fingerprint))
            .flatten();
        let mut matched: Vec<&Arc<Client>> = Vec::new();
        let mut ambiguous = false;
        let mut wrong_issuer = false;
        for client in candidates {
            for binding in &client.bindings {
                match binding.judge(cert, issuers) {
                    Verdict::Matches => {
                        if !matched.iter().any(|c| c.name == client.name) {
                            matched.push(client);
                        }
                    }
                    Verdict::Ambiguous => ambiguous = true,
                    Verdict::WrongIssuer => wrong_issuer = true,
                    Verdict::NoMatch => {}
                }
            }
        }
        match (ambiguous, matched.as_slice()) {
            (false, [only]) => Ok(only),
            (false, []) if wrong_issuer => Err(CertMatchFailure::IssuerNotAllowed),
            (false, []) => Err(CertMatchFailure::Unmapped),
            _ => Err(CertMatchFailure::Ambiguous),
        }
    }

    /// Every binding whose issuer is ambiguous under `issuers`, as `client: why`.
    pub fn ambiguous_issuers(&self, issuers: &IssuerIndex) -> Vec<String> {
        let mut problems: Vec<String> = self
            .clients
            .values()
            .flat_map(|client| {
                client
                    .bindings
                    .iter()
                    .filter_map(|b| b.check_issuer(issuers).err())
                    .map(|why| format!("client `{}`: {why}", client.name))
            })
            .collect();
        problems.sort();
        problems
    }

    /// The first binding of another client that `binding` would overlap, if any.
    pub fn overlapping(&self, client: &ClientName, binding: &CertBinding) -> Option<&ClientName> {
        first_overlap(self.clients.values().map(|c| &**c), client, binding)
    }
}
