//! The bulk of the registry, indexed compactly: every client as of the last rebuild, in hash
//! tables of positions (hashbrown's `HashTable`), shared by every snapshot made since.
//!
//! An entry is a client's position in one array, with a 32-bit tag of the key it is filed
//! under; a lookup confirms the key against the client's own fields, so no key is stored
//! twice. Persistent hash tries (rpds) cost two allocations and over a hundred bytes per
//! entry per index: about 2 KiB a client at a million. These tables cost 5 to 9 bytes an
//! entry (up to twice that just past a power of two). They are never changed once built:
//! changes go to the snapshot's own tries.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;

use hashbrown::HashTable;

use super::{ApiKeyHash, Client, Kind};
use crate::identity::Fingerprint;

/// Every client of one moment, indexed by name, key hash, the names its bindings name (of
/// every [`Kind`]) and pin.
#[derive(Default)]
pub(super) struct Indexed {
    hasher: RandomState,
    /// Every client; the tables hold positions in it.
    all: Box<[Arc<Client>]>,
    names: NamePositions,
    by_key: HashTable<Filed>,
    /// Filed under the tag of (kind, name).
    by_name: HashTable<Filed>,
    /// Pins of bindings that name no subject.
    by_fingerprint: HashTable<Filed>,
    /// Every pin.
    by_pin: HashTable<Filed>,
}

/// Positions in one array of clients, by name: 4 bytes a client, the names staying in the
/// clients. The registry's base and a read's assembly both find clients by name this way.
#[derive(Default)]
pub(super) struct NamePositions {
    hasher: RandomState,
    table: HashTable<u32>,
}

impl NamePositions {
    /// The positions of `clients`, which every later `find` must be given unchanged.
    pub(super) fn of<C: Borrow<Client>>(clients: &[C]) -> Self {
        let hasher = RandomState::new();
        let hash = |at: &u32| hasher.hash_one(clients[*at as usize].borrow().name.as_str());
        let len = u32::try_from(clients.len()).expect("fewer than four billion clients");
        let mut table = HashTable::with_capacity(clients.len());
        for at in 0..len {
            table.insert_unique(hash(&at), at, hash);
        }
        Self { hasher, table }
    }

    /// The position in `clients` of the one named `name`.
    pub(super) fn find<C: Borrow<Client>>(&self, clients: &[C], name: &str) -> Option<usize> {
        let at = self.table.find(self.hasher.hash_one(name), |at| {
            clients[*at as usize].borrow().name.as_str() == name
        })?;
        Some(*at as usize)
    }
}

/// A client's position, filed under one of its keys with that key's tag: a client filed under
/// several keys of a table is found once per key looked up (not once per entry whose hash
/// happens to share bits with it), and the table can grow without knowing the keys.
#[derive(Clone, Copy)]
struct Filed {
    tag: u32,
    at: u32,
}

/// 32 bits of a key's hash: enough to tell keys apart almost always (the lookup confirms the
/// key itself), and half the size of the whole hash in every entry.
type Tag = u32;

fn tag<K: Hash + ?Sized>(hasher: &RandomState, key: &K) -> Tag {
    // The low half: `spread` then mixes all of it into the table's hash.
    hasher.hash_one(key) as Tag
}

/// The table hash of a tag, spread over 64 bits: hashbrown places entries by the low bits and
/// tells them apart by the top seven, which a bare 32-bit value would leave at zero.
fn spread(tag: Tag) -> u64 {
    u64::from(tag).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl fmt::Debug for Indexed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Indexed")
            .field("clients", &self.all.len())
            .finish_non_exhaustive()
    }
}

fn table(entries: Vec<Filed>) -> HashTable<Filed> {
    let mut table = HashTable::with_capacity(entries.len());
    for entry in entries {
        table.insert_unique(spread(entry.tag), entry, |filed| spread(filed.tag));
    }
    table
}

impl Indexed {
    pub(super) fn build(clients: impl IntoIterator<Item = Arc<Client>>) -> Self {
        let hasher = RandomState::new();
        let all: Box<[Arc<Client>]> = clients.into_iter().collect();
        let mut entries: [Vec<Filed>; 4] = Default::default();
        let [keys, names, fingerprints, pins] = &mut entries;
        let mut tags = Vec::new();
        for (at, client) in all.iter().enumerate() {
            let at = u32::try_from(at).expect("fewer than four billion clients");
            // Each entry once per client, however many of its bindings name it.
            let file = |into: &mut Vec<Filed>, found: &mut Vec<Tag>| {
                found.sort_unstable();
                found.dedup();
                into.extend(found.drain(..).map(|tag| Filed { tag, at }));
            };
            let bindings = &client.bindings;
            tags.extend(client.api_keys.iter().map(|k| tag(&hasher, &k.hash)));
            file(keys, &mut tags);
            tags.extend(
                bindings
                    .iter()
                    .flat_map(|b| &b.names)
                    .map(|name| tag(&hasher, &(name.kind(), name.as_str()))),
            );
            file(names, &mut tags);
            tags.extend(
                bindings
                    .iter()
                    .filter(|b| !b.names_a_subject())
                    .flat_map(|b| &b.fingerprints)
                    .map(|f| tag(&hasher, f)),
            );
            file(fingerprints, &mut tags);
            tags.extend(
                bindings
                    .iter()
                    .flat_map(|b| &b.fingerprints)
                    .map(|f| tag(&hasher, f)),
            );
            file(pins, &mut tags);
        }
        let [by_key, by_name, by_fingerprint, by_pin] = entries.map(table);
        Self {
            hasher,
            names: NamePositions::of(&all),
            all,
            by_key,
            by_name,
            by_fingerprint,
            by_pin,
        }
    }

    /// The clients filed in `table` under `key`'s tag (the caller confirms the key itself).
    fn filed<'a, K: Hash + ?Sized>(
        &'a self,
        table: &'a HashTable<Filed>,
        key: &K,
    ) -> impl Iterator<Item = &'a Arc<Client>> + use<'a, K> {
        self.filed_under(table, tag(&self.hasher, key))
    }

    /// The clients filed in `table` under `tag`.
    fn filed_under<'a>(
        &'a self,
        table: &'a HashTable<Filed>,
        tag: Tag,
    ) -> impl Iterator<Item = &'a Arc<Client>> + use<'a> {
        table
            .iter_hash(spread(tag))
            .filter(move |filed| filed.tag == tag)
            .map(|filed| &self.all[filed.at as usize])
    }

    pub(super) fn len(&self) -> usize {
        self.all.len()
    }

    pub(super) fn clients(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.all.iter()
    }

    pub(super) fn client(&self, name: &str) -> Option<&Arc<Client>> {
        Some(&self.all[self.names.find(&self.all, name)?])
    }

    /// The client with a key of this hash (the caller compares it again in constant time).
    pub(super) fn by_key(&self, hash: &ApiKeyHash) -> Option<&Arc<Client>> {
        self.filed(&self.by_key, hash)
            .find(|c| c.api_keys.iter().any(|k| k.hash == *hash))
    }

    /// The clients with a binding that names `name` as a name of `kind` (as indexed: see
    /// `Kind::key`).
    pub(super) fn by_name<'a, 'n>(
        &'a self,
        kind: Kind,
        name: Cow<'n, str>,
    ) -> impl Iterator<Item = &'a Arc<Client>> + use<'a, 'n> {
        let filed_as = tag(&self.hasher, &(kind, name.as_ref()));
        self.filed_under(&self.by_name, filed_as).filter(move |c| {
            c.bindings
                .iter()
                .any(|b| b.name(kind) == Some(name.as_ref()))
        })
    }

    pub(super) fn by_fingerprint<'a>(
        &'a self,
        pin: &Fingerprint,
    ) -> impl Iterator<Item = &'a Arc<Client>> {
        self.filed(&self.by_fingerprint, pin).filter(move |c| {
            c.bindings
                .iter()
                .any(|b| !b.names_a_subject() && b.fingerprints.contains(pin))
        })
    }

    pub(super) fn by_pin<'a>(&'a self, pin: &Fingerprint) -> impl Iterator<Item = &'a Arc<Client>> {
        self.filed(&self.by_pin, pin)
            .filter(move |c| c.bindings.iter().any(|b| b.fingerprints.contains(pin)))
    }
}
