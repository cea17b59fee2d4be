//! A reverted guard's scope ([`Reopening`]): the method its flip retired, re-admitted from the
//! networks whose refusals reverted it, until a bounded time; the client stays in the mode the
//! operator set. And a guard's rows as its rule reads them. Every replica rereads the ones in
//! force about once a second (`in_force.rs`); the request path reads them from memory.

use std::collections::BTreeSet;

use serde::Serialize;

use super::tally::Watch;
use crate::identity::AuthMethod;

/// A reverted guard's scope: the method its flip retired, re-admitted from the networks whose
/// refusals reverted it, until a bounded time. The client stays in the mode the operator set;
/// from every other network, and after `until`, that method is refused as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reopening {
    pub method: AuthMethod,
    pub networks: BTreeSet<String>,
    pub until: i64,
}

impl Reopening {
    /// Whether a request refused for its mode is let in by this reopening (pure).
    pub fn admits(&self, method: AuthMethod, network: &str, now: i64) -> bool {
        self.method == method && now < self.until && self.networks.contains(network)
    }
}

/// A guard row's reopening, as stored: the retired method, its networks (JSON) and its end.
pub(super) fn reopening_of(
    method: Option<String>,
    networks: String,
    until: Option<i64>,
) -> Option<Reopening> {
    Some(Reopening {
        method: AuthMethod::parse(&method?)?,
        networks: serde_json::from_str(&networks).ok()?,
        until: until?,
    })
}

/// A watching guard's row as its rule reads it.
pub(super) fn watch_of(
    started_at: i64,
    watch_until: i64,
    retired_method: Option<String>,
    known_networks: &str,
) -> Watch {
    Watch {
        started_at,
        watch_until,
        retired: retired_method.and_then(|m| AuthMethod::parse(&m)),
        known_networks: serde_json::from_str(known_networks).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopening_admits_its_method_from_its_networks_until_it_ends_and_nothing_else() {
        let reopening = Reopening {
            method: AuthMethod::ApiKey,
            networks: ["10.1.2.0/24".to_owned()].into(),
            until: 500,
        };
        let table = [
            (AuthMethod::ApiKey, "10.1.2.0/24", 499, true),
            (AuthMethod::ApiKey, "10.1.2.0/24", 500, false),
            (AuthMethod::ApiKey, "203.0.113.0/24", 100, false),
            (AuthMethod::Certificate, "10.1.2.0/24", 100, false),
        ];
        for (method, network, now, admits) in table {
            assert_eq!(
                reopening.admits(method, network, now),
                admits,
                "{method:?} from {network} at {now}"
            );
        }
    }
}
