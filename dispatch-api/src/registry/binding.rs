//! How a certificate is tied to a client, and how one binding judges one verified
//! certificate: by what the verified path proves (the issuer's encoded name and key, the leaf's
//! names, pins), never by how a name prints. The kinds of name are in [`name`].

mod name;

use std::sync::Arc;

use serde::Serialize;

use super::{Client, ClientName};
use crate::identity::{DistinguishedName, Fingerprint, IssuerIndex, SpkiHash, VerifiedCertificate};
pub use dispatch_types::CertBindingSpec;
use name::Named;
pub use name::{Kind, Name};

/// How a certificate is tied to a client. Its names (one of each [`Kind`] at most; several
/// must all match) come with the issuer expected to have signed them; pinned fingerprints
/// narrow it to exact certificates. Binding by issuer plus name, rather than by fingerprint
/// alone, lets a certificate be renewed without re-registering the client.
///
/// The issuer is matched against the verified path, never against printed text: the leaf's
/// issuer name as encoded (RDN by RDN) AND the key that signed it, which is `issuer_spki` when
/// pinned, otherwise the key of the one CA of the bundle with that name (or, for an
/// intermediate outside the bundle, whatever the bundle's only CA signed). A name that could
/// stand for more than one key is ambiguous and refused: see [`CertBinding::check_issuer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertBinding {
    /// Shared: a million bindings name a handful of CAs (see [`CertBinding::parse_with`]).
    pub issuer: Option<Arc<DistinguishedName>>,
    /// Boxed: few bindings pin the key, and inline it would cost 32 bytes in every binding
    /// (a registry of a million clients holds a million bindings).
    pub issuer_spki: Option<Box<SpkiHash>>,
    /// In the order of [`Kind::ALL`]; empty for a binding by pins alone.
    pub names: Box<[Name]>,
    pub fingerprints: Vec<Fingerprint>,
}

/// As written: a binding answers as it was given.
impl Serialize for CertBinding {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_spec().serialize(serializer)
    }
}

/// How one binding judges one verified certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The binding does not name this certificate.
    NoMatch,
    /// It names it and everything holds.
    Matches,
    /// It names one of several names of a kind that wants one (CNs, URI SANs): which is meant?
    Ambiguous,
    /// It names the certificate but expects another issuer (name or key).
    WrongIssuer,
}

impl CertBinding {
    pub fn parse(spec: &CertBindingSpec) -> Result<Self, String> {
        Self::parse_with(spec, |text| DistinguishedName::parse(text).map(Arc::new))
    }

    /// [`Self::parse`], reading the issuer with `issuer`: the registry's start-up reads each
    /// distinct issuer once and shares it between every binding that names it.
    pub(super) fn parse_with(
        spec: &CertBindingSpec,
        issuer: impl FnOnce(&str) -> Result<Arc<DistinguishedName>, String>,
    ) -> Result<Self, String> {
        let issuer = spec.issuer.as_deref().map(issuer).transpose()?;
        let issuer_spki = spec
            .issuer_spki_sha256
            .as_deref()
            .map(SpkiHash::parse)
            .transpose()?
            .map(Box::new);
        let names = Kind::ALL
            .into_iter()
            .filter_map(|kind| Some(Name::parse(kind, kind.in_spec(spec)?)))
            .collect::<Result<Box<[Name]>, _>>()?;
        let fingerprints = spec
            .fingerprints
            .iter()
            .map(|f| Fingerprint::parse(f))
            .collect::<Result<Vec<_>, _>>()?;
        if names.is_empty() && fingerprints.is_empty() {
            return Err(format!(
                "a binding needs {} or pinned fingerprints",
                Kind::fields("a ")
            ));
        }
        if !names.is_empty() && issuer.is_none() {
            // A name alone would let any CA in the bundle mint this client's identity.
            return Err(format!(
                "a binding by {} needs the expected issuer",
                Kind::fields("")
            ));
        }
        if issuer_spki.is_some() && issuer.is_none() {
            return Err("issuer_spki_sha256 pins the key of the issuer: set issuer too".into());
        }
        Ok(Self {
            issuer,
            issuer_spki,
            names,
            fingerprints,
        })
    }

    pub fn to_spec(&self) -> CertBindingSpec {
        let mut spec = CertBindingSpec {
            issuer: self.issuer.as_ref().map(|i| i.as_str().to_owned()),
            issuer_spki_sha256: self.issuer_spki.as_ref().map(|k| k.to_string()),
            fingerprints: self.fingerprints.iter().map(|f| f.to_string()).collect(),
            ..CertBindingSpec::default()
        };
        for name in &self.names {
            *name.kind().in_spec_mut(&mut spec) = Some(name.as_str().to_owned());
        }
        spec
    }

    pub(super) fn names_a_subject(&self) -> bool {
        !self.names.is_empty()
    }

    /// Its name of `kind`, if it has one.
    pub fn name(&self, kind: Kind) -> Option<&str> {
        self.names
            .iter()
            .find(|name| name.kind() == kind)
            .map(Name::as_str)
    }

    /// Judges a verified certificate. Each of its names must be carried by the leaf, alone of
    /// its kind where the kind wants one (a CN binding needs the subject's only CN, a SPIFFE
    /// binding the only URI SAN, as X.509-SVID requires).
    pub(crate) fn judge(&self, cert: &VerifiedCertificate, issuers: &IssuerIndex) -> Verdict {
        let leaf = &cert.leaf;
        let mut ambiguous = false;
        for name in &self.names {
            match name.judge(leaf) {
                Named::No => return Verdict::NoMatch,
                Named::Ambiguous => ambiguous = true,
                Named::Yes => {}
            }
        }
        if ambiguous {
            return Verdict::Ambiguous;
        }
        // Pins (a pin-only binding has nothing else) narrow it to exact certificates; a
        // certificate they exclude is not named by this binding, whatever its issuer.
        if !self.fingerprints.is_empty() && !self.fingerprints.contains(&leaf.fingerprint) {
            return Verdict::NoMatch;
        }
        if let Some(issuer) = &self.issuer
            && !self.issuer_signed(issuer, cert, issuers)
        {
            return Verdict::WrongIssuer;
        }
        Verdict::Matches
    }

    /// Whether the CA that signed the leaf in the verified path is this binding's issuer.
    fn issuer_signed(
        &self,
        issuer: &DistinguishedName,
        cert: &VerifiedCertificate,
        issuers: &IssuerIndex,
    ) -> bool {
        if cert.leaf.issuer != *issuer {
            return false;
        }
        match (self.issuer_spki.as_deref(), issuers.keys_named(issuer)) {
            (Some(pin), _) => cert.issuer_spki == *pin,
            (None, [only]) => cert.issuer_spki == *only,
            // An intermediate outside the bundle: its path can only end at the bundle's one CA.
            (None, []) => issuers.ca_count() == 1,
            // Several CAs of this name: refused at start-up and registration; never matches.
            (None, _) => false,
        }
    }

    /// Refuses an issuer that could stand for more than one key: two CAs of the bundle with
    /// that name, or a name outside a bundle of several CAs (any of which could sign an
    /// intermediate that bears it), unless the key is pinned with `issuer_spki_sha256`.
    pub fn check_issuer(&self, issuers: &IssuerIndex) -> Result<(), String> {
        let Some(issuer) = &self.issuer else {
            return Ok(());
        };
        if self.issuer_spki.is_some() {
            return Ok(());
        }
        if let Some(meant) = issuers
            .reordered(issuer)
            .filter(|meant| *meant != &**issuer)
        {
            return Err(format!(
                "the issuer `{issuer}` names no CA of the client CA bundle; `{meant}` is one: names compare attribute by attribute in the order the certificate encodes them (as `openssl x509 -noout -issuer` and /api/whoami print them)"
            ));
        }
        match issuers.keys_named(issuer) {
            [_] => Ok(()),
            [] if issuers.ca_count() <= 1 => Ok(()),
            [] => Err(format!(
                "the issuer `{issuer}` is not a CA of the client CA bundle, which holds {} CAs: any of them could sign an intermediate of that name. Pin the issuing CA's key with issuer_spki_sha256",
                issuers.ca_count()
            )),
            keys => Err(format!(
                "the issuer `{issuer}` is ambiguous: {} CAs of the client CA bundle bear that name (SPKI SHA-256 {}). Pin one with issuer_spki_sha256",
                keys.len(),
                keys.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }

    /// Whether one certificate could be named by both bindings: a name they share (the same
    /// kind and value) from the same issuer (unless their pins tell them apart), or the same pinned
    /// certificate. Two clients must never hold overlapping bindings.
    pub fn overlaps(&self, other: &CertBinding) -> bool {
        let pins_apart = !self.fingerprints.is_empty()
            && !other.fingerprints.is_empty()
            && !self
                .fingerprints
                .iter()
                .any(|f| other.fingerprints.contains(f));
        if pins_apart {
            return false;
        }
        if !self.names_a_subject() || !other.names_a_subject() {
            // A pinned certificate against a binding that pins it too.
            return !self.fingerprints.is_empty() && !other.fingerprints.is_empty();
        }
        let keys_apart =
            matches!((&self.issuer_spki, &other.issuer_spki), (Some(a), Some(b)) if a != b);
        let same_name = self.names.iter().any(|name| other.names.contains(name));
        self.issuer == other.issuer && !keys_apart && same_name
    }
}

/// The first of `clients`, other than `client`, with a binding that overlaps `binding`.
pub(crate) fn first_overlap<'a>(
    clients: impl IntoIterator<Item = &'a Client>,
    client: &ClientName,
    binding: &CertBinding,
) -> Option<&'a ClientName> {
    clients
        .into_iter()
        .filter(|other| other.name != *client)
        .find(|other| other.bindings.iter().any(|b| b.overlaps(binding)))
        .map(|other| &other.name)
}
