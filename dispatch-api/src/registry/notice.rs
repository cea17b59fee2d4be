//! What a registry write announces to the other replicas (PostgreSQL): the NOTIFY channel and
//! the payload, written by `write::announce` in the write's own transaction and read by the
//! follower (`follow.rs`).

use super::ClientName;
use crate::identity::Fingerprint;

/// The NOTIFY channel of registry changes.
pub const CHANNEL: &str = "dispatch_registry";

/// What one committed change touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Client(ClientName),
    Revoked(Fingerprint),
    /// Many clients at once (a bootstrap file): read everything.
    All,
}

impl Notice {
    /// `<version> client <name>`, `<version> revoked <fingerprint>`, `<version> all`.
    pub fn payload(&self, version: i64) -> String {
        match self {
            Self::Client(name) => format!("{version} client {name}"),
            Self::Revoked(fingerprint) => format!("{version} revoked {fingerprint}"),
            Self::All => format!("{version} all"),
        }
    }

    /// The version and notice of a payload; `None` for one this version does not understand
    /// (a newer replica's), which the caller treats as "read everything".
    pub fn parse(payload: &str) -> Option<(i64, Self)> {
        let mut words = payload.split(' ');
        let version = words.next()?.parse().ok()?;
        let notice = match (words.next()?, words.next()) {
            ("client", Some(name)) => Self::Client(ClientName::parse(name).ok()?),
            ("revoked", Some(fingerprint)) => Self::Revoked(Fingerprint::parse(fingerprint).ok()?),
            ("all", None) => Self::All,
            _ => return None,
        };
        words.next().is_none().then_some((version, notice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str) -> Notice {
        Notice::Client(ClientName::parse(name).unwrap())
    }

    #[test]
    fn a_notice_survives_its_payload() {
        let fingerprint = Fingerprint::parse(&"ab".repeat(32)).unwrap();
        for notice in [
            client("route-worker"),
            Notice::Revoked(fingerprint),
            Notice::All,
        ] {
            assert_eq!(
                Notice::parse(&notice.payload(7)),
                Some((7, notice.clone())),
                "{notice:?}"
            );
        }
    }

    #[test]
    fn payloads_this_version_does_not_understand_are_none() {
        for payload in [
            "",
            "7",
            "x client a",
            "7 client",
            "7 client a b",
            "7 client bad/name",
            "7 revoked nothex",
            "7 all more",
            "7 renamed a",
        ] {
            assert_eq!(Notice::parse(payload), None, "{payload:?}");
        }
    }
}
