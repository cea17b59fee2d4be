//! The registry's rows, whichever driver reads them: the queries, and their assembly into
//! clients ([`Assembly`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use crate::identity::{DistinguishedName, Fingerprint};
use crate::registry::compact::NamePositions;
use crate::registry::{
    ApiKey, ApiKeyHash, CertBinding, CertBindingSpec, Client, ClientName, Kind, MigrationMode,
    Scope,
};

pub(super) const CLIENTS: &str = "SELECT name, mode, scopes, disabled FROM clients";
pub(super) const CLIENT: &str = "SELECT name, mode, scopes, disabled FROM clients WHERE name = $1";
// A binding's names, one column per kind, after the columns every binding has.
pub(super) static BINDINGS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT client, issuer, issuer_spki_sha256, fingerprints, {} FROM cert_bindings ORDER BY id",
        Kind::columns()
    )
});
pub(super) static BINDINGS_OF: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT client, issuer, issuer_spki_sha256, fingerprints, {} FROM cert_bindings \
         WHERE client = $1 ORDER BY id",
        Kind::columns()
    )
});
// The current key first, then the replaced ones, the latest replaced first: as
// `Client::api_keys` holds them.
pub(super) const KEYS: &str = "SELECT client, key_sha256, created_at, expires_at, replaced_at FROM api_keys \
     ORDER BY replaced_at IS NOT NULL, replaced_at DESC, created_at DESC, key_sha256";
pub(super) const KEYS_OF: &str = "SELECT client, key_sha256, created_at, expires_at, replaced_at \
     FROM api_keys WHERE client = $1 \
     ORDER BY replaced_at IS NOT NULL, replaced_at DESC, created_at DESC, key_sha256";
pub(super) const REVOKED: &str = "SELECT fingerprint FROM revoked_certificates";

/// A binding's row as a spec: the columns every binding has, then one per kind of name, each
/// read by `name` from its column (`Kind::field`).
pub(super) fn binding_spec<E>(
    issuer: Option<String>,
    issuer_spki_sha256: Option<String>,
    fingerprints: &str,
    mut name: impl FnMut(&'static str) -> Result<Option<String>, E>,
) -> Result<CertBindingSpec, E> {
    let mut spec = CertBindingSpec {
        issuer,
        issuer_spki_sha256,
        fingerprints: fingerprints.split_whitespace().map(str::to_owned).collect(),
        ..CertBindingSpec::default()
    };
    for kind in Kind::ALL {
        *kind.in_spec_mut(&mut spec) = name(kind.field())?;
    }
    Ok(spec)
}

pub(super) fn revoked<'a>(texts: impl Iterator<Item = &'a str>) -> HashSet<Fingerprint> {
    texts
        .filter_map(|text| Fingerprint::parse(text).ok())
        .collect()
}

/// Clients made from their rows: the clients' own first, then their bindings and keys.
///
/// Each binding and key row goes straight onto its client, found through a table of
/// positions (4 bytes a client), so nothing but the clients themselves is held: at a million
/// clients, maps of rows by client name cost as much as the registry. Each client's lists
/// are allocated to fit: a `Vec` grows to four at its first push, and four bindings and four
/// keys for the usual one of each waste about 770 bytes a client.
/// Each distinct issuer name is parsed once and shared by every binding that names it.
#[derive(Default)]
pub(super) struct Assembly {
    clients: Vec<Client>,
    /// Positions in `clients` by name; filled once every client is read.
    positions: NamePositions,
    issuers: HashMap<String, Arc<DistinguishedName>>,
}

impl Assembly {
    pub(super) fn client(&mut self, name: &str, mode: &str, scopes: &str, disabled: bool) {
        let parsed = ClientName::parse(name).and_then(|client_name| {
            Ok(Client {
                mode: MigrationMode::parse(mode)?,
                scopes: scopes
                    .split_whitespace()
                    .map(Scope::parse)
                    .collect::<Result<_, _>>()?,
                disabled,
                bindings: Vec::new(),
                api_keys: Vec::new(),
                name: client_name,
            })
        });
        match parsed {
            Ok(client) => self.clients.push(client),
            Err(error) => tracing::error!(
                client = name,
                error,
                "skipping a stored client that does not parse"
            ),
        }
    }

    /// Between the clients and their bindings: files each client's position by its name.
    pub(super) fn index(&mut self) {
        self.positions = NamePositions::of(&self.clients);
    }

    /// The client named `name`; none for a row of a client that did not parse, which goes with it.
    fn named(&mut self, name: &str) -> Option<&mut Client> {
        let at = self.positions.find(&self.clients, name)?;
        Some(&mut self.clients[at])
    }

    pub(super) fn binding(&mut self, client: &str, spec: CertBindingSpec) {
        let issuers = &mut self.issuers;
        let parsed = CertBinding::parse_with(&spec, |text| {
            if let Some(issuer) = issuers.get(text) {
                return Ok(issuer.clone());
            }
            let issuer = Arc::new(DistinguishedName::parse(text)?);
            issuers.insert(text.to_owned(), issuer.clone());
            Ok(issuer)
        });
        match parsed {
            Ok(binding) => {
                if let Some(named) = self.named(client) {
                    push_fitted(&mut named.bindings, binding);
                }
            }
            Err(error) => tracing::error!(
                client,
                error,
                "skipping a stored certificate binding that does not parse"
            ),
        }
    }

    pub(super) fn key(
        &mut self,
        client: &str,
        hash: &str,
        created_at: i64,
        expires_at: Option<i64>,
        replaced_at: Option<i64>,
    ) {
        match ApiKeyHash::parse_hex(hash) {
            Ok(hash) => {
                if let Some(named) = self.named(client) {
                    push_fitted(
                        &mut named.api_keys,
                        ApiKey {
                            hash,
                            created_at,
                            expires_at,
                            replaced_at,
                        },
                    );
                }
            }
            Err(error) => tracing::error!(
                client,
                error,
                "skipping a stored API key hash that does not parse"
            ),
        }
    }

    pub(super) fn finish(mut self) -> Vec<Client> {
        for client in &mut self.clients {
            // Only the few with more than two of either were grown past their length.
            client.bindings.shrink_to_fit();
            client.api_keys.shrink_to_fit();
        }
        self.clients
    }
}

/// Pushes `item` onto `list`, growing it by one for the first two (as most clients have) and
/// by doubling after that, so a client with many bindings or keys is read in linear time.
/// `Assembly::finish` trims what doubling left over.
fn push_fitted<T>(list: &mut Vec<T>, item: T) {
    if list.len() < 2 {
        list.reserve_exact(1);
    }
    list.push(item);
}
