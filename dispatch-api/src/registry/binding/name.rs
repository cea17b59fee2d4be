//! The kinds of name a binding can name a certificate by, each defined once: its field in a
//! binding as written and its column as stored, how its value is parsed and compared with the
//! verified leaf's names of its kind, and whether a leaf carrying several is ambiguous.
//!
//! Adding a kind is a variant of [`Kind`] and of [`Name`], the arms the compiler then asks for
//! here, its field in `CertBindingSpec` (the dispatch-types crate), its column in
//! `cert_bindings` (a migration per dialect) and its flag in dispatchctl. Parsing, indexing,
//! lookup, matching, overlaps, storage and display all go through this module.

use std::borrow::Cow;

use crate::identity::{PeerCertificate, SpiffeId};

use super::CertBindingSpec;

/// A kind of name, for what is said of every name of the kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The subject's CN.
    SubjectCn,
    /// A SPIFFE ID in a URI SAN (an X.509-SVID).
    SpiffeId,
    /// A dNSName SAN, as ACME CAs name a workload.
    DnsName,
}

impl Kind {
    pub const ALL: [Self; 3] = [Self::SubjectCn, Self::SpiffeId, Self::DnsName];

    /// The field of a binding as written (bootstrap file, admin API) and the column of
    /// `cert_bindings` that hold a name of this kind.
    pub const fn field(self) -> &'static str {
        match self {
            Self::SubjectCn => "subject_cn",
            Self::SpiffeId => "spiffe_id",
            Self::DnsName => "dns_name",
        }
    }

    /// Its position in per-kind tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The verified leaf's names that a name of this kind is compared with: every CN of the
    /// subject; every URI SAN, SPIFFE or not, since an X.509-SVID must carry exactly one; every
    /// dNSName SAN.
    pub fn of_leaf(self, leaf: &PeerCertificate) -> &[String] {
        match self {
            Self::SubjectCn => &leaf.common_names,
            Self::SpiffeId => &leaf.uri_sans,
            Self::DnsName => &leaf.dns_names,
        }
    }

    /// A leaf's name as it is compared and indexed: DNS names compare case-insensitively
    /// (RFC 4343), so they are looked up in lower case, as bindings store them; CNs and URIs
    /// exactly as encoded.
    pub fn key(self, name: &str) -> Cow<'_, str> {
        match self {
            Self::DnsName if name.bytes().any(|b| b.is_ascii_uppercase()) => {
                Cow::Owned(name.to_ascii_lowercase())
            }
            Self::SubjectCn | Self::SpiffeId | Self::DnsName => Cow::Borrowed(name),
        }
    }

    /// Whether a leaf that carries several names of this kind is ambiguous to a binding by it:
    /// which CN or URI SAN is meant? Not for DNS names: a certificate names its workload by
    /// several (`worker.internal`, `worker.prod.internal`), and each is proof of its own.
    const fn wants_one(self) -> bool {
        match self {
            Self::SubjectCn | Self::SpiffeId => true,
            Self::DnsName => false,
        }
    }
    /// This kind's field of `spec`.
    pub fn in_spec(self, spec: &CertBindingSpec) -> Option<&str> {
        match self {
            Self::SubjectCn => spec.subject_cn.as_deref(),
            Self::SpiffeId => spec.spiffe_id.as_deref(),
            Self::DnsName => spec.dns_name.as_deref(),
        }
    }

    /// This kind's field of `spec`, to fill.
    pub fn in_spec_mut(self, spec: &mut CertBindingSpec) -> &mut Option<String> {
        match self {
            Self::SubjectCn => &mut spec.subject_cn,
            Self::SpiffeId => &mut spec.spiffe_id,
            Self::DnsName => &mut spec.dns_name,
        }
    }

    /// The columns of every kind, in order, for SQL: `subject_cn, spiffe_id, dns_name`.
    pub fn columns() -> String {
        Self::ALL.map(Self::field).join(", ")
    }

    /// The fields of every kind, `a, b or c`, for messages about them all.
    pub fn fields(prefix: &str) -> String {
        let names: Vec<String> = Self::ALL
            .iter()
            .map(|kind| format!("{prefix}{}", kind.field()))
            .collect();
        match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

/// One name a binding names a certificate by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Name {
    SubjectCn(String),
    SpiffeId(SpiffeId),
    /// In lower case, without a trailing dot.
    DnsName(String),
}

/// How one name of a binding judges a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// The leaf does not carry it.
    No,
    /// The leaf carries it, and nothing else of its kind that could be meant instead.
    Yes,
    /// The leaf carries it among several of its kind, where the kind wants one.
    Ambiguous,
}

impl Name {
    /// A name of `kind` as written.
    pub fn parse(kind: Kind, text: &str) -> Result<Self, String> {
        match kind {
            Kind::SubjectCn => match text.trim() {
                "" => Err("subject_cn is empty".into()),
                cn => Ok(Self::SubjectCn(cn.to_owned())),
            },
            Kind::SpiffeId => SpiffeId::parse(text).map(Self::SpiffeId),
            Kind::DnsName => dns_name(text).map(Self::DnsName),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Self::SubjectCn(_) => Kind::SubjectCn,
            Self::SpiffeId(_) => Kind::SpiffeId,
            Self::DnsName(_) => Kind::DnsName,
        }
    }

    /// As written, stored and indexed; compared with the leaf's names of its kind.
    pub fn as_str(&self) -> &str {
        match self {
            Self::SubjectCn(cn) | Self::DnsName(cn) => cn,
            Self::SpiffeId(id) => id.as_str(),
        }
    }

    /// Whether `leaf` carries this name, and alone of its kind where the kind wants one.
    pub fn judge(&self, leaf: &PeerCertificate) -> Named {
        let kind = self.kind();
        let carried = kind.of_leaf(leaf);
        if !carried.iter().any(|name| kind.key(name) == self.as_str()) {
            Named::No
        } else if kind.wants_one() && carried.len() != 1 {
            Named::Ambiguous
        } else {
            Named::Yes
        }
    }
}

/// A DNS name as a binding names it: letters, digits and hyphens in dot-separated labels of
/// 1 to 63, at most 253 in all, in lower case, a trailing dot dropped. No wildcard: a binding
/// names one workload, and a certificate's `*.example.com` is no proof of any one name.
fn dns_name(text: &str) -> Result<String, String> {
    let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "`{text}` is not a DNS name (letters, digits and hyphens in dot-separated labels; no wildcard)"
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_sits_at_its_own_index_and_field() {
        for (at, kind) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), at, "{kind:?}");
            let mut spec = CertBindingSpec::default();
            *kind.in_spec_mut(&mut spec) = Some("x".into());
            assert_eq!(kind.in_spec(&spec), Some("x"), "{kind:?}");
            for other in Kind::ALL.into_iter().filter(|other| *other != kind) {
                assert_eq!(other.in_spec(&spec), None, "{kind:?} leaks into {other:?}");
            }
        }
        assert_eq!(
            Kind::fields("a "),
            "a subject_cn, a spiffe_id or a dns_name"
        );
        assert_eq!(Kind::columns(), "subject_cn, spiffe_id, dns_name");
    }

    #[test]
    fn a_name_keeps_its_kind_and_its_text() {
        for (kind, text, kept) in [
            (Kind::SubjectCn, " route-worker ", "route-worker"),
            (Kind::SpiffeId, "spiffe://d/w", "spiffe://d/w"),
            (
                Kind::DnsName,
                "Worker-1.Dispatch.Internal.",
                "worker-1.dispatch.internal",
            ),
        ] {
            let name = Name::parse(kind, text).unwrap();
            assert_eq!((name.kind(), name.as_str()), (kind, kept));
        }
        assert!(Name::parse(Kind::SubjectCn, "  ").is_err());
        assert!(Name::parse(Kind::SpiffeId, "https://d/w").is_err());
    }

    #[test]
    fn a_dns_name_binding_takes_one_plain_name_and_no_wildcard() {
        for bad in [
            "",
            ".",
            "*.dispatch.internal",
            "worker..internal",
            "-worker.internal",
            "worker-.internal",
            "worker_1.internal",
            "worker 1.internal",
            &"a".repeat(64),
            &format!("{}.internal", vec!["a".repeat(60); 5].join(".")),
        ] {
            assert!(Name::parse(Kind::DnsName, bad).is_err(), "{bad:?}");
        }
        let longest = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(longest.len(), 253);
        assert!(Name::parse(Kind::DnsName, &longest).is_ok());
    }

    #[test]
    fn only_dns_names_are_looked_up_in_lower_case() {
        assert_eq!(Kind::DnsName.key("Worker.Internal"), "worker.internal");
        assert!(matches!(
            Kind::DnsName.key("worker.internal"),
            Cow::Borrowed(_)
        ));
        assert_eq!(Kind::SubjectCn.key("Worker"), "Worker");
        assert_eq!(Kind::SpiffeId.key("spiffe://D/W"), "spiffe://D/W");
    }
}
