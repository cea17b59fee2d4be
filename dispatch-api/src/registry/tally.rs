//! The refusals a guarded flip causes, counted in memory on each replica ([`FlipTally`]) and
//! added to the guard's row about once a second; [`reached`] is the guard's threshold.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The refusals a flip caused, as seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlipEvidence {
    /// Refusals by reason code.
    pub by_reason: BTreeMap<String, i64>,
    /// The source networks they came from (a /24, or a /64), at most [`NETWORKS_KEPT`].
    pub networks: BTreeSet<String>,
    /// Unix seconds.
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
}

/// Enough networks to tell "one stale deploy" from "a whole region".
const NETWORKS_KEPT: usize = 16;

impl FlipEvidence {
    pub fn add(&mut self, reason: &str, network: Option<String>, at: i64) {
        *self.by_reason.entry(reason.to_owned()).or_default() += 1;
        if let Some(network) = network
            && self.networks.len() < NETWORKS_KEPT
        {
            self.networks.insert(network);
        }
        self.first_seen = Some(self.first_seen.map_or(at, |first| first.min(at)));
        self.last_seen = Some(self.last_seen.map_or(at, |last| last.max(at)));
    }

    pub fn merge(&mut self, other: &FlipEvidence) {
        for (reason, count) in &other.by_reason {
            *self.by_reason.entry(reason.clone()).or_default() += count;
        }
        for network in &other.networks {
            if self.networks.len() < NETWORKS_KEPT {
                self.networks.insert(network.clone());
            }
        }
        self.first_seen = match (self.first_seen, other.first_seen) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_seen = match (self.last_seen, other.last_seen) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    pub fn total(&self) -> i64 {
        self.by_reason.values().sum()
    }

    /// "5 refusals (key_retired 5) from 10.1.2.0/24": why a flip was reverted.
    pub fn because(&self) -> String {
        let reasons: Vec<String> = self
            .by_reason
            .iter()
            .map(|(reason, count)| format!("{reason} {count}"))
            .collect();
        let networks: Vec<&str> = self.networks.iter().map(String::as_str).collect();
        format!(
            "{} refusals ({}) from {}",
            self.total(),
            reasons.join(", "),
            if networks.is_empty() {
                "unknown sources".to_owned()
            } else {
                networks.join(", ")
            }
        )
    }
}

/// One replica's refusals per client since its last tick. Only the refusals a flip causes are
/// counted; those of clients with no watching guard are dropped at the tick.
#[derive(Debug, Default)]
pub struct FlipTally(Mutex<HashMap<String, FlipEvidence>>);

impl FlipTally {
    /// Counts a refusal if its reason is one a flip causes.
    pub fn count(&self, client: &str, reason: &str, network: Option<String>, at: i64) {
        if !matches!(reason, "key_retired" | "method_not_allowed") {
            return;
        }
        let mut tally = self.0.lock().unwrap_or_else(|e| e.into_inner());
        tally
            .entry(client.to_owned())
            .or_default()
            .add(reason, network, at);
    }

    pub fn take(&self) -> HashMap<String, FlipEvidence> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back what a failed tick could not add, for the next one.
    pub fn restore(&self, client: String, evidence: &FlipEvidence) {
        let mut tally = self.0.lock().unwrap_or_else(|e| e.into_inner());
        tally.entry(client).or_default().merge(evidence);
    }
}

/// Whether `refusals` reach the guard's threshold (pure).
pub fn reached(refusals: i64, max_refusals: i64) -> bool {
    refusals >= max_refusals.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_adds_and_merges_counts_networks_and_times() {
        let mut a = FlipEvidence::default();
        a.add("key_retired", Some("10.1.2.0/24".into()), 100);
        a.add("key_retired", Some("10.1.2.0/24".into()), 90);
        a.add("method_not_allowed", None, 120);
        assert_eq!((a.first_seen, a.last_seen), (Some(90), Some(120)));
        let mut b = FlipEvidence::default();
        b.add("key_retired", Some("10.9.9.0/24".into()), 80);
        a.merge(&b);
        assert_eq!(a.total(), 4);
        assert_eq!(a.by_reason["key_retired"], 3);
        assert_eq!(a.by_reason["method_not_allowed"], 1);
        assert_eq!(a.first_seen, Some(80));
        assert_eq!(a.last_seen, Some(120));
        assert_eq!(
            a.because(),
            "4 refusals (key_retired 3, method_not_allowed 1) from 10.1.2.0/24, 10.9.9.0/24"
        );
        // Merging into nothing keeps the other's times.
        let mut empty = FlipEvidence::default();
        empty.merge(&b);
        assert_eq!((empty.first_seen, empty.last_seen), (Some(80), Some(80)));
        assert_eq!(
            FlipEvidence::default().because(),
            "0 refusals () from unknown sources"
        );
    }

    #[test]
    fn evidence_keeps_a_bounded_number_of_networks() {
        let mut evidence = FlipEvidence::default();
        for i in 0..100 {
            evidence.add("key_retired", Some(format!("10.0.{i}.0/24")), i);
        }
        assert_eq!(evidence.networks.len(), NETWORKS_KEPT);
        let mut other = FlipEvidence::default();
        other.add("key_retired", Some("192.168.0.0/24".into()), 1);
        evidence.merge(&other);
        assert_eq!(evidence.networks.len(), NETWORKS_KEPT);
        assert_eq!(evidence.total(), 101);
    }

    #[test]
    fn only_refusals_a_flip_causes_are_tallied() {
        let tally = FlipTally::default();
        for reason in [
            "key_retired",
            "method_not_allowed",
            "key_invalid",
            "cert_revoked",
            "client_disabled",
        ] {
            tally.count("w", reason, None, 1);
        }
        let taken = tally.take();
        assert_eq!(taken["w"].total(), 2);
        assert!(tally.take().is_empty(), "taking empties the tally");
        // What a failed tick restores is added to what came meanwhile.
        tally.count("w", "key_retired", None, 2);
        tally.restore("w".into(), &taken["w"]);
        assert_eq!(tally.take()["w"].total(), 3);
    }

    #[test]
    fn the_threshold_is_reached_at_max_refusals() {
        assert!(!reached(4, 5));
        assert!(reached(5, 5));
        assert!(reached(6, 5));
        // A stored threshold of 0 still needs one refusal.
        assert!(!reached(0, 0));
        assert!(reached(1, 0));
    }
}
