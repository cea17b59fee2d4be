//! The registry as the request path sees it: an immutable snapshot, indexed by key hash and by
//! what a certificate names, swapped atomically after each admin write.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use super::compact::Indexed;
use super::{ApiKey, ApiKeyHash, CertBinding, Client, ClientName, Kind, Verdict, first_overlap};
use crate::identity::{Fingerprint, IssuerIndex, SpkiHash, VerifiedCertificate};

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

/// Clients changed since the base was built before the base is built again: at least this
/// many, or an eighth of the base. A rebuild costs O(n) (a full pass over the clients), so it
/// comes once per n/8 changes and a flip costs O(log n) on average. Small in tests, so that
/// the property tests below cross rebuilds.
const REBUILD_AFTER: usize = if cfg!(test) { 3 } else { 1024 };

/// An immutable view of the registry, indexed for the request path.
///
/// Two layers: `base`, every client as of the last rebuild in compact tables (shared by every
/// snapshot since), and the clients changed since, in persistent hash tries (rpds) that
/// [`Self::with_client`] changes in O(log n), sharing everything the change does not touch. A
/// lookup asks the changes first; a client of the base that has changed since is never
/// answered from the base.
#[derive(Debug, Default, Clone)]
pub struct RegistrySnapshot {
    base: Arc<Indexed>,
    /// Clients changed since the base was built: their latest form, or `None` once removed.
    changed: Trie<ClientName, Option<Arc<Client>>>,
    // The changed clients that exist, by what they are looked up by.
    by_key: Trie<ApiKeyHash, Arc<Client>>,
    /// By name, one trie per [`Kind`]: each name of a certificate is looked up in its kind's.
    by_name: [Trie<String, Vec<Arc<Client>>>; Kind::ALL.len()],
    /// Bindings that pin certificates and name no subject, by pinned fingerprint.
    by_fingerprint: Trie<Fingerprint, Vec<Arc<Client>>>,
    /// Every binding that pins certificates, by pinned fingerprint: where overlaps are found.
    by_pin: Trie<Fingerprint, Vec<Arc<Client>>>,
    revoked: rpds::HashTrieSetSync<Fingerprint>,
    /// Keys on the deny list: every certificate of such a key is refused.
    pub(super) denied_keys: rpds::HashTrieSetSync<SpkiHash>,
}

type Trie<K, V> = rpds::HashTrieMapSync<K, V>;

/// Adds `client` under `key`.
fn add<K: std::hash::Hash + Eq + Clone>(
    map: &mut Trie<K, Vec<Arc<Client>>>,
    key: K,
    client: &Arc<Client>,
) {
    let mut clients = map.get(&key).cloned().unwrap_or_default();
    if !clients.iter().any(|c| c.name == client.name) {
        clients.push(client.clone());
        map.insert_mut(key, clients);
    }
}

/// Takes the client named `name` out from under `key`, and the key with it once empty.
fn remove<K: std::hash::Hash + Eq + Clone>(
    map: &mut Trie<K, Vec<Arc<Client>>>,
    key: &K,
    name: &ClientName,
) {
    let Some(clients) = map.get(key) else {
        return;
    };
    let rest: Vec<Arc<Client>> = clients
        .iter()
        .filter(|c| c.name != *name)
        .cloned()
        .collect();
    if rest.is_empty() {
        map.remove_mut(key);
    } else {
        map.insert_mut(key.clone(), rest);
    }
}

impl RegistrySnapshot {
    /// A snapshot of `clients`, whose names are unique (they are the database's key).
    pub fn new(clients: Vec<Client>, revoked: HashSet<Fingerprint>) -> Self {
        Self {
            base: Arc::new(Indexed::build(clients.into_iter().map(Arc::new))),
            revoked: revoked.into_iter().collect(),
            ..Self::default()
        }
    }

    /// The next snapshot, with `client` as its name's entry (added or replaced) or, with
    /// `None`, without the client named `name`.
    pub fn with_client(&self, name: &ClientName, client: Option<Client>) -> Self {
        let mut next = self.clone();
        next.take_out(name);
        match client {
            Some(client) => next.insert(client),
            None => next.changed.insert_mut(name.clone(), None),
        }
        next
    }

    /// This snapshot, with its base rebuilt if the changes since have outgrown it: called on
    /// a snapshot about to be published, never on one made to try a change (a tryout would
    /// rebuild and discard the base on every call once the threshold is reached).
    pub(super) fn settled(self) -> Self {
        if self.changed.size() > REBUILD_AFTER.max(self.base.len() / 8) {
            self.rebuilt()
        } else {
            self
        }
    }

    /// The next snapshot, with `fingerprint` on the deny list.
    pub fn with_revoked(&self, fingerprint: Fingerprint) -> Self {
        let mut next = self.clone();
        next.revoked.insert_mut(fingerprint);
        next
    }

    /// The next snapshot, with every key of `keys` on the deny list.
    pub fn with_denied_keys(&self, keys: impl IntoIterator<Item = SpkiHash>) -> Self {
        let mut next = self.clone();
        for key in keys {
            next.denied_keys.insert_mut(key);
        }
        next
    }

    #[cfg(test)]
    pub(super) fn rebuilt_for_test(&self) -> Self {
        self.rebuilt()
    }

    /// The same clients, all in a new base.
    fn rebuilt(&self) -> Self {
        Self {
            base: Arc::new(Indexed::build(self.clients().cloned())),
            revoked: self.revoked.clone(),
            denied_keys: self.denied_keys.clone(),
            ..Self::default()
        }
    }

    /// Adds a changed client and its index entries (after [`Self::take_out`] of its name).
    fn insert(&mut self, client: Client) {
        let client = Arc::new(client);
        for key in &client.api_keys {
            self.by_key.insert_mut(key.hash, client.clone());
        }
        for binding in &client.bindings {
            for name in &binding.names {
                let by_name = &mut self.by_name[name.kind().index()];
                add(by_name, name.as_str().to_owned(), &client);
            }
            for pin in &binding.fingerprints {
                add(&mut self.by_pin, *pin, &client);
                if !binding.names_a_subject() {
                    add(&mut self.by_fingerprint, *pin, &client);
                }
            }
        }
        self.changed.insert_mut(client.name.clone(), Some(client));
    }

    /// Removes the index entries of the changed client named `name`, if it has changed (a
    /// client of the base is hidden by its entry in `changed`).
    fn take_out(&mut self, name: &ClientName) {
        let Some(Some(client)) = self.changed.get(name).cloned() else {
            return;
        };
        self.changed.remove_mut(name);
        for key in &client.api_keys {
            if self.by_key.get(&key.hash).is_some_and(|c| c.name == *name) {
                self.by_key.remove_mut(&key.hash);
            }
        }
        for binding in &client.bindings {
            for named in &binding.names {
                let by_name = &mut self.by_name[named.kind().index()];
                remove(by_name, &named.as_str().to_owned(), name);
            }
            for pin in &binding.fingerprints {
                remove(&mut self.by_pin, pin, name);
                remove(&mut self.by_fingerprint, pin, name);
            }
        }
    }

    /// Whether a client found in the base is still current (has not changed since).
    fn current(&self, client: &Arc<Client>) -> bool {
        // Usually nothing has changed since the base was built: no hashing of the name then.
        self.changed.is_empty() || !self.changed.contains_key(&client.name)
    }

    /// The changed clients filed under `key` of one index, then the base's that are current.
    fn found<'a, K, Q>(
        &'a self,
        changed: &'a Trie<K, Vec<Arc<Client>>>,
        key: &Q,
        base: impl Iterator<Item = &'a Arc<Client>>,
    ) -> impl Iterator<Item = &'a Arc<Client>>
    where
        K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        changed
            .get(key)
            .into_iter()
            .flatten()
            .chain(base.filter(|c| self.current(c)))
    }

    pub fn client(&self, name: &ClientName) -> Option<&Arc<Client>> {
        match self.changed.get(name) {
            Some(changed) => changed.as_ref(),
            None => self.base.client(name.as_str()),
        }
    }

    pub fn clients(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.base
            .clients()
            .filter(|c| self.current(c))
            .chain(self.changed.values().flatten())
    }

    /// The client whose key this is, and the key, if any (expired or not). Looked up by hash
    /// (SHA-256 of a long random key, so the lookup's timing says nothing useful about the key);
    /// `matches` compares the stored hash again in constant time, which keeps the comparison
    /// itself free of early exits.
    pub fn client_for_key(&self, hash: &ApiKeyHash) -> Option<(&Arc<Client>, ApiKey)> {
        let client = match self.by_key.get(hash) {
            Some(client) => client,
            None => self.base.by_key(hash).filter(|c| self.current(c))?,
        };
        client.key(hash).map(|key| (client, *key))
    }

    /// Whether this certificate is on the deny list.
    pub fn is_revoked(&self, fingerprint: &Fingerprint) -> bool {
        self.revoked.contains(fingerprint)
    }

    /// The clients a binding of which names `name` (as `Kind::key` gives it) as a `kind`.
    fn with_name<'a, 'n>(
        &'a self,
        kind: Kind,
        name: Cow<'n, str>,
    ) -> impl Iterator<Item = &'a Arc<Client>> + use<'a, 'n> {
        let changed = self.by_name[kind.index()].get(name.as_ref());
        let base = self.base.by_name(kind, name);
        changed
            .into_iter()
            .flatten()
            .chain(base.filter(|c| self.current(c)))
    }

    fn with_pin<'a>(&'a self, pin: &Fingerprint) -> impl Iterator<Item = &'a Arc<Client>> {
        self.found(&self.by_pin, pin, self.base.by_pin(pin))
    }

    fn pinned_only<'a>(&'a self, pin: &Fingerprint) -> impl Iterator<Item = &'a Arc<Client>> {
        self.found(&self.by_fingerprint, pin, self.base.by_fingerprint(pin))
    }

    /// The one client a verified certificate is bound to.
    pub fn client_for_certificate(
        &self,
        cert: &VerifiedCertificate,
        issuers: &IssuerIndex,
    ) -> Result<&Arc<Client>, CertMatchFailure> {
        if cert.fingerprints().any(|f| self.is_revoked(f))
            || self.denied_keys.contains(&cert.leaf.spki)
        {
            return Err(CertMatchFailure::Revoked);
        }
        let mut matched: Vec<&Arc<Client>> = Vec::new();
        let mut ambiguous = false;
        let mut wrong_issuer = false;
        for client in self.candidates(cert) {
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

    /// The clients a binding of which could name `cert`: by its names and its pin.
    fn candidates<'s, 'c>(
        &'s self,
        cert: &'c VerifiedCertificate,
    ) -> impl Iterator<Item = &'s Arc<Client>> + use<'s, 'c> {
        let leaf = &cert.leaf;
        Kind::ALL
            .into_iter()
            .flat_map(move |kind| {
                let names = kind.of_leaf(leaf).iter();
                names.flat_map(move |name| self.with_name(kind, kind.key(name)))
            })
            .chain(self.pinned_only(&leaf.fingerprint))
    }

    /// The clients whose bindings name `cert`, or would but for an ambiguous issuer: whose
    /// certificate it is, for the evidence of one refused as `cert_ambiguous` (each of them
    /// keeps it, so no change can hand it to yet another client meanwhile).
    pub fn clients_naming(&self, cert: &VerifiedCertificate, issuers: &IssuerIndex) -> Vec<String> {
        let mut named: Vec<String> = Vec::new();
        for client in self.candidates(cert) {
            let names = client.bindings.iter().any(|binding| {
                matches!(
                    binding.judge(cert, issuers),
                    Verdict::Matches | Verdict::Ambiguous
                )
            });
            if names && !named.iter().any(|n| n == client.name.as_str()) {
                named.push(client.name.to_string());
            }
        }
        named
    }

    /// Every binding whose issuer is ambiguous under `issuers`, as `client: why`.
    pub fn ambiguous_issuers(&self, issuers: &IssuerIndex) -> Vec<String> {
        let mut problems: Vec<String> = self
            .clients()
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

    /// The first binding of another client that `binding` would overlap, if any. Only clients
    /// that share a name or a pin with it can overlap it (`CertBinding::overlaps`), so only
    /// those are looked at.
    pub fn overlapping(&self, client: &ClientName, binding: &CertBinding) -> Option<&ClientName> {
        let candidates = binding
            .names
            .iter()
            .flat_map(|name| self.with_name(name.kind(), Cow::Borrowed(name.as_str())))
            .chain(
                binding
                    .fingerprints
                    .iter()
                    .flat_map(|pin| self.with_pin(pin)),
            )
            .map(|c| &**c);
        first_overlap(candidates, client, binding)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::registry::{CertBindingSpec, MigrationMode, Scope};

    const ISSUERS: [&str; 2] = ["CN=Issuing CA, O=Test", "CN=Other CA, O=Test"];

    /// A binding from small pools of names and pins, so that clients share them often.
    fn binding() -> impl Strategy<Value = CertBindingSpec> {
        (
            0..2usize,
            proptest::option::of(0..3u8),
            proptest::option::of(0..3u8),
            proptest::collection::btree_set(0..3u8, 0..3),
        )
            .prop_filter_map(
                "a binding names or pins something",
                |(issuer, cn, uri, pins)| {
                    let spec = CertBindingSpec {
                        issuer: Some(ISSUERS[issuer].to_owned()),
                        subject_cn: cn.map(|n| format!("cn-{n}")),
                        spiffe_id: uri.map(|n| format!("spiffe://test/w{n}")),
                        fingerprints: pins.iter().map(|p| format!("{p:064x}")).collect(),
                        ..Default::default()
                    };
                    CertBinding::parse(&spec).is_ok().then_some(spec)
                },
            )
    }

    fn client() -> impl Strategy<Value = Client> {
        (
            0..5u8,
            proptest::option::of(0..3u8),
            proptest::collection::vec(binding(), 0..3),
            any::<bool>(),
        )
            .prop_map(|(name, key, bindings, disabled)| Client {
                name: ClientName::parse(&format!("c{name}")).unwrap(),
                mode: MigrationMode::Dual,
                scopes: BTreeSet::from([Scope::PlansSubmit]),
                disabled,
                bindings: bindings
                    .iter()
                    .map(|b| CertBinding::parse(b).unwrap())
                    .collect(),
                // Key hashes are unique in the database (`api_keys.key_sha256` is the key): each
                // client draws from its own few, a current key and perhaps a retiring one.
                api_keys: key
                    .map(|k| {
                        (k..k + 1 + k % 2)
                            .map(|k| {
                                let unique = u32::from(name) * 8 + u32::from(k);
                                let hash = ApiKeyHash::parse_hex(&format!("{unique:064x}"));
                                ApiKey::new(hash.unwrap(), 0)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
    }

    /// Everything a snapshot answers, in order: each client, then what each lookup finds for
    /// every key, name and pin any of `seen` ever held (so an entry left behind for a removed or
    /// changed client shows), with the whole client it leads to (a stale copy shows).
    fn contents(snapshot: &RegistrySnapshot, seen: &[Client]) -> Vec<String> {
        let described = |c: &Arc<Client>| {
            let keys: Vec<String> = c.api_keys.iter().map(|k| k.hash.to_hex()).collect();
            format!("{c:?} keys={keys:?}")
        };
        let mut lines: Vec<String> = snapshot
            .clients()
            .map(|c| format!("client {} {}", c.name, described(c)))
            .collect();
        let mut list = |label: &str, key: String, found: Vec<&Arc<Client>>| {
            let mut named: Vec<String> = found.into_iter().map(described).collect();
            named.sort();
            lines.push(format!("{label} {key} {named:?}"));
        };
        for client in seen {
            list(
                "named",
                client.name.to_string(),
                snapshot.client(&client.name).into_iter().collect(),
            );
            for key in &client.api_keys {
                let found = snapshot.client_for_key(&key.hash).map(|(c, _)| c);
                list("key", key.hash.to_hex(), found.into_iter().collect());
            }
            for binding in &client.bindings {
                for name in &binding.names {
                    let (kind, name) = (name.kind(), name.as_str());
                    let found = snapshot.with_name(kind, name.into()).collect();
                    list(kind.field(), name.to_owned(), found);
                }
                for pin in &binding.fingerprints {
                    list(
                        "fingerprint",
                        pin.to_string(),
                        snapshot.pinned_only(pin).collect(),
                    );
                    list("pin", pin.to_string(), snapshot.with_pin(pin).collect());
                }
            }
        }
        lines.extend(snapshot.revoked.iter().map(|f| format!("revoked {f}")));
        lines.sort();
        lines.dedup();
        lines
    }

    proptest! {
        /// Changed one client at a time (added, replaced, removed), a snapshot holds exactly what
        /// one built from scratch with the final clients holds: no index entry left behind, none
        /// missing, none leading to an old copy of a client.
        #[test]
        fn a_snapshot_changed_client_by_client_equals_one_built_from_scratch(
            changes in proptest::collection::vec((0..5u8, proptest::option::of(client())), 1..12),
        ) {
            let mut incremental = RegistrySnapshot::default();
            let mut stored: std::collections::BTreeMap<ClientName, Client> = Default::default();
            let seen: Vec<Client> = changes.iter().filter_map(|(_, c)| c.clone()).collect();
            for (name, change) in changes {
                let name = match &change {
                    Some(client) => client.name.clone(),
                    None => ClientName::parse(&format!("c{name}")).unwrap(),
                };
                incremental = incremental.with_client(&name, change.clone()).settled();
                match change {
                    Some(client) => stored.insert(name, client),
                    None => stored.remove(&name),
                };
            }
            let rebuilt = RegistrySnapshot::new(stored.into_values().collect(), HashSet::new());
            prop_assert_eq!(contents(&incremental, &seen), contents(&rebuilt, &seen));
        }

        /// The indexed search for an overlapping binding finds one exactly when a scan of every
        /// client does.
        #[test]
        fn the_indexed_overlap_search_agrees_with_a_scan_of_every_client(
            clients in proptest::collection::vec(client(), 0..6),
            candidate in client(),
        ) {
            let snapshot = RegistrySnapshot::new(clients, HashSet::new());
            for binding in &candidate.bindings {
                let scanned =
                    first_overlap(snapshot.clients().map(|c| &**c), &candidate.name, binding);
                prop_assert_eq!(
                    snapshot.overlapping(&candidate.name, binding).is_some(),
                    scanned.is_some()
                );
            }
        }
    }

    #[test]
    fn a_revocation_is_added_to_the_next_snapshot_only() {
        let before = RegistrySnapshot::default();
        let fingerprint = Fingerprint::parse(&format!("{:064x}", 7)).unwrap();
        let after = before.with_revoked(fingerprint);
        assert!(after.revoked.contains(&fingerprint));
        assert!(!before.revoked.contains(&fingerprint));
    }
}
