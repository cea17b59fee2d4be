//! The kinds of name a binding can name a certificate by, each defined once: its field in a
//! binding as written and its column as stored, how its value is parsed, and which of the
//! verified leaf's names it is compared with (a leaf carrying several is ambiguous).
//!
//! Adding a kind is a variant of [`Kind`] and of [`Name`], the arms the compiler then asks for
//! here, its field in [`super::CertBindingSpec`] and its column in `cert_bindings` (a
//! migration per dialect). Parsing, indexing, lookup, matching, overlaps, storage and display
//! all go through this module.

use crate::identity::{PeerCertificate, SpiffeId};

use super::CertBindingSpec;

/// A kind of name, for what is said of every name of the kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The subject's CN.
    SubjectCn,
    /// A SPIFFE ID in a URI SAN (an X.509-SVID).
    SpiffeId,
}

impl Kind {
    pub const ALL: [Self; 2] = [Self::SubjectCn, Self::SpiffeId];

    /// The field of a binding as written (bootstrap file, admin API) and the column of
    /// `cert_bindings` that hold a name of this kind.
    pub const fn field(self) -> &'static str {
        match self {
            Self::SubjectCn => "subject_cn",
            Self::SpiffeId => "spiffe_id",
        }
    }

    /// Its position in per-kind tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The verified leaf's names that a name of this kind is compared with: every CN of the
    /// subject; every URI SAN, SPIFFE or not, since an X.509-SVID must carry exactly one.
    pub fn of_leaf(self, leaf: &PeerCertificate) -> &[String] {
        match self {
            Self::SubjectCn => &leaf.common_names,
            Self::SpiffeId => &leaf.uri_sans,
        }
    }

    /// This kind's field of `spec`.
    pub fn in_spec(self, spec: &CertBindingSpec) -> Option<&str> {
        match self {
            Self::SubjectCn => spec.subject_cn.as_deref(),
            Self::SpiffeId => spec.spiffe_id.as_deref(),
        }
    }

    /// This kind's field of `spec`, to fill.
    pub fn in_spec_mut(self, spec: &mut CertBindingSpec) -> &mut Option<String> {
        match self {
            Self::SubjectCn => &mut spec.subject_cn,
            Self::SpiffeId => &mut spec.spiffe_id,
        }
    }

    /// The columns of every kind, in order, for SQL: `subject_cn, spiffe_id`.
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
}

/// How one name of a binding judges a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// The leaf does not carry it.
    No,
    /// The leaf carries it, and nothing else of its kind that could be meant instead.
    Yes,
    /// The leaf carries it among several of its kind.
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
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Self::SubjectCn(_) => Kind::SubjectCn,
            Self::SpiffeId(_) => Kind::SpiffeId,
        }
    }

    /// As written, stored and indexed; compared with the leaf's names of its kind.
    pub fn as_str(&self) -> &str {
        match self {
            Self::SubjectCn(cn) => cn,
            Self::SpiffeId(id) => id.as_str(),
        }
    }

    /// Whether `leaf` carries this name, and alone of its kind: which CN or URI SAN would be
    /// meant otherwise? (A kind of name a certificate carries several of by design, as DNS
    /// names, would say so here.)
    pub fn judge(&self, leaf: &PeerCertificate) -> Named {
        let carried = self.kind().of_leaf(leaf);
        if !carried.iter().any(|name| name == self.as_str()) {
            Named::No
        } else if carried.len() != 1 {
            Named::Ambiguous
        } else {
            Named::Yes
        }
    }
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
        assert_eq!(Kind::fields("a "), "a subject_cn or a spiffe_id");
        assert_eq!(Kind::columns(), "subject_cn, spiffe_id");
    }

    #[test]
    fn a_name_keeps_its_kind_and_its_text() {
        for (kind, text, kept) in [
            (Kind::SubjectCn, " route-worker ", "route-worker"),
            (Kind::SpiffeId, "spiffe://d/w", "spiffe://d/w"),
        ] {
            let name = Name::parse(kind, text).unwrap();
            assert_eq!((name.kind(), name.as_str()), (kind, kept));
        }
        assert!(Name::parse(Kind::SubjectCn, "  ").is_err());
        assert!(Name::parse(Kind::SpiffeId, "https://d/w").is_err());
    }
}
