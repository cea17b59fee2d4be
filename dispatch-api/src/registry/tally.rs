//! The refusals a guarded flip may have caused, counted in memory on each replica
//! ([`FlipTally`]), each with its time, method and source network, and judged by the guard's
//! rule ([`judge`]) as they come, against the replica's copy of the guard, and again about once
//! a second against the stored guard: only a refusal of the method the flip retired, from a
//! network that used that method before the flip, after the guard started and before its watch
//! ended, counts toward it. [`reached`] is the guard's threshold.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::identity::AuthMethod;

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

/// As many as a guard knows (`guard_start::KNOWN_NETWORKS_KEPT`): the evidence of a guard
/// holds only known networks, and a revert reopens every one of them whose refusals counted.
const NETWORKS_KEPT: usize = 64;

impl FlipEvidence {
    pub fn add(&mut self, reason: &str, network: Option<String>, at: i64) {
        self.add_many(reason, network, at, 1);
    }

    /// `count` refusals at once, all alike.
    pub fn add_many(&mut self, reason: &str, network: Option<String>, at: i64, count: i64) {
        *self.by_reason.entry(reason.to_owned()).or_default() += count;
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

/// One refusal a flip may have caused, as the request observer saw it: the reason, the method
/// refused, the source network (a /24 or a /64) and the second it came in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefusalAt {
    pub reason: &'static str,
    pub method: AuthMethod,
    pub network: String,
    pub at: i64,
}

/// Distinct (reason, method, network, second) entries one client keeps between two ticks: a
/// holder of a leaked key sending from many networks cannot grow a replica's memory. Past it,
/// new entries are dropped, counted in [`Tallied::dropped`].
pub const MAX_TALLIED: usize = 1024;

/// One client's refusals since the last tick: those to judge at the tick (`seen`), and those
/// already judged, against the guard this replica holds in memory, to come from unknown
/// networks (`unknown`, by network), kept apart so that a flood of them never crowds out a
/// known instance's refusals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tallied {
    pub seen: BTreeMap<RefusalAt, i64>,
    pub unknown: BTreeMap<String, i64>,
    pub dropped: i64,
}

/// Adds `count` under `key`, or counts it dropped past `MAX_TALLIED` distinct keys.
fn bounded_add<K: Ord>(map: &mut BTreeMap<K, i64>, dropped: &mut i64, key: K, count: i64) {
    if let Some(have) = map.get_mut(&key) {
        *have += count;
    } else if map.len() < MAX_TALLIED {
        map.insert(key, count);
    } else {
        *dropped += count;
    }
}

/// One replica's refusals per client since its last tick. Only the refusals a flip causes are
/// kept; those of clients with no watching guard are dropped at the tick.
#[derive(Debug, Default)]
pub struct FlipTally(Mutex<HashMap<String, Tallied>>);

impl FlipTally {
    /// Counts a refusal if its reason is one a flip causes. With the client's watching guard
    /// as this replica holds it (`watch`), it is judged at once: ignored, kept apart as from
    /// an unknown network, or kept to count; without (a guard started on another replica under
    /// a second ago), it is kept to be judged at the tick.
    pub fn count(
        &self,
        client: &str,
        reason: &str,
        method: AuthMethod,
        network: String,
        at: i64,
        watch: Option<&Watch>,
    ) {
        let reason = match reason {
            "key_retired" => "key_retired",
            "method_not_allowed" => "method_not_allowed",
            _ => return,
        };
        let refusal = RefusalAt {
            reason,
            method,
            network,
            at,
        };
        let judged = watch.map(|watch| judge(watch, &refusal));
        if judged == Some(Judged::Ignored) {
            return;
        }
        let mut tally = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let tallied = tally.entry(client.to_owned()).or_default();
        if judged == Some(Judged::UnknownSource) {
            bounded_add(
                &mut tallied.unknown,
                &mut tallied.dropped,
                refusal.network,
                1,
            );
        } else {
            bounded_add(&mut tallied.seen, &mut tallied.dropped, refusal, 1);
        }
    }

    pub fn take(&self) -> HashMap<String, Tallied> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back what a failed tick could not add, for the next one.
    pub fn restore(&self, client: String, tallied: Tallied) {
        let mut tally = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mine = tally.entry(client).or_default();
        mine.dropped += tallied.dropped;
        for (key, count) in tallied.seen {
            bounded_add(&mut mine.seen, &mut mine.dropped, key, count);
        }
        for (network, count) in tallied.unknown {
            bounded_add(&mut mine.unknown, &mut mine.dropped, network, count);
        }
    }
}

/// What a watching guard holds to judge a refusal by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// The method the flip retired (`None`: it retired none, and nothing counts).
    pub retired: Option<AuthMethod>,
    /// The networks that used it within the evidence window before the flip.
    pub known_networks: BTreeSet<String>,
    pub started_at: i64,
    pub watch_until: i64,
}

/// How a guard takes one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// A known instance the flip cut off: it counts toward the guard.
    Counts,
    /// The retired credential, sent from a network that never used it before the flip: a
    /// leaked or stolen credential, never a reason to reopen. An alert.
    UnknownSource,
    /// Not the guard's business: another method, or outside its watch (a refusal from before
    /// the flip, that the flip may even have cured).
    Ignored,
}

/// The guard's rule (pure, table-tested): a refusal counts when it refuses the method the flip
/// retired, came in while the guard watched, and came from a network that used that method
/// before the flip.
pub fn judge(watch: &Watch, refusal: &RefusalAt) -> Judged {
    let within = refusal.at >= watch.started_at && refusal.at < watch.watch_until;
    if watch.retired != Some(refusal.method) || !within {
        Judged::Ignored
    } else if watch.known_networks.contains(&refusal.network) {
        Judged::Counts
    } else {
        Judged::UnknownSource
    }
}

/// The method a flip from `from` to `to` retires: the one `from` accepted and `to` refuses.
pub fn retired_by(from: super::MigrationMode, to: super::MigrationMode) -> Option<AuthMethod> {
    [AuthMethod::ApiKey, AuthMethod::Certificate]
        .into_iter()
        .find(|method| from.accepts(*method) && !to.accepts(*method))
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

    fn refused(method: AuthMethod, network: &str, at: i64) -> RefusalAt {
        RefusalAt {
            reason: match method {
                AuthMethod::ApiKey => "key_retired",
                AuthMethod::Certificate => "method_not_allowed",
            },
            method,
            network: network.to_owned(),
            at,
        }
    }

    #[test]
    fn only_refusals_a_flip_causes_are_tallied_with_their_time_method_and_network() {
        let tally = FlipTally::default();
        for reason in [
            "key_retired",
            "method_not_allowed",
            "key_invalid",
            "key_expired",
            "cert_revoked",
            "client_disabled",
        ] {
            tally.count(
                "w",
                reason,
                AuthMethod::ApiKey,
                "10.0.0.0/24".into(),
                1,
                None,
            );
        }
        tally.count(
            "w",
            "key_retired",
            AuthMethod::ApiKey,
            "10.0.0.0/24".into(),
            1,
            None,
        );
        let taken = tally.take();
        let seen = &taken["w"].seen;
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[&refused(AuthMethod::ApiKey, "10.0.0.0/24", 1)], 2);
        assert!(tally.take().is_empty(), "taking empties the tally");
        // What a failed tick restores is added to what came meanwhile.
        tally.count(
            "w",
            "key_retired",
            AuthMethod::ApiKey,
            "10.0.0.0/24".into(),
            1,
            None,
        );
        tally.restore("w".into(), taken["w"].clone());
        assert_eq!(
            tally.take()["w"].seen[&refused(AuthMethod::ApiKey, "10.0.0.0/24", 1)],
            3
        );
    }

    #[test]
    fn a_flood_from_unknown_networks_never_crowds_out_a_known_instances_refusals() {
        let tally = FlipTally::default();
        let watch = Watch {
            retired: Some(AuthMethod::ApiKey),
            known_networks: ["10.1.2.0/24".to_owned()].into(),
            started_at: 100,
            watch_until: 200,
        };
        let count = |network: String, at| {
            tally.count(
                "w",
                "key_retired",
                AuthMethod::ApiKey,
                network,
                at,
                Some(&watch),
            );
        };
        for i in 0..(2 * MAX_TALLIED as i64) {
            count(format!("2001:db8:{i:x}::/64"), 150);
        }
        count("10.1.2.0/24".into(), 150);
        // Before the flip, or of another method: dropped at once.
        count("10.1.2.0/24".into(), 99);
        tally.count(
            "w",
            "method_not_allowed",
            AuthMethod::Certificate,
            "10.1.2.0/24".into(),
            150,
            Some(&watch),
        );
        let taken = tally.take();
        assert_eq!(
            taken["w"].seen,
            BTreeMap::from([(refused(AuthMethod::ApiKey, "10.1.2.0/24", 150), 1)])
        );
        assert_eq!(taken["w"].unknown.len(), MAX_TALLIED);
        assert_eq!(taken["w"].dropped, MAX_TALLIED as i64);
        // Restored, the unknown ones stay apart too.
        tally.restore("w".into(), taken["w"].clone());
        let again = tally.take();
        assert_eq!(again["w"].seen.len(), 1);
        assert_eq!(
            again["w"].unknown.values().sum::<i64>() + again["w"].dropped,
            2 * MAX_TALLIED as i64
        );
    }

    #[test]
    fn a_client_keeps_a_bounded_number_of_distinct_refusals_between_ticks() {
        let tally = FlipTally::default();
        for i in 0..(MAX_TALLIED as i64 + 10) {
            tally.count(
                "w",
                "key_retired",
                AuthMethod::ApiKey,
                format!("2001:db8:{i:x}::/64"),
                1,
                None,
            );
        }
        let taken = tally.take();
        assert_eq!(taken["w"].seen.len(), MAX_TALLIED);
        assert_eq!(taken["w"].dropped, 10);
        tally.restore("w".into(), taken["w"].clone());
        tally.restore("w".into(), taken["w"].clone());
        let twice = tally.take();
        assert_eq!(twice["w"].seen.len(), MAX_TALLIED);
        assert_eq!(twice["w"].dropped, 20);
        // A new entry restored into a full tally is dropped, and counted.
        tally.restore("w".into(), twice["w"].clone());
        let mut new = Tallied::default();
        new.seen
            .insert(refused(AuthMethod::ApiKey, "192.0.2.0/24", 2), 7);
        tally.restore("w".into(), new);
        let full = tally.take();
        assert_eq!(full["w"].seen.len(), MAX_TALLIED);
        assert_eq!(full["w"].dropped, 27);
    }

    #[test]
    fn a_guard_counts_only_the_retired_method_from_known_networks_within_its_watch() {
        use Judged::*;
        let watch = Watch {
            retired: Some(AuthMethod::ApiKey),
            known_networks: ["10.1.2.0/24".to_owned()].into(),
            started_at: 100,
            watch_until: 200,
        };
        let known = "10.1.2.0/24";
        let other = "203.0.113.0/24";
        let table = [
            // (method, network, at, judged)
            (AuthMethod::ApiKey, known, 100, Counts),
            (AuthMethod::ApiKey, known, 199, Counts),
            // Before the flip (it may have cured it), or after the watch.
            (AuthMethod::ApiKey, known, 99, Ignored),
            (AuthMethod::ApiKey, known, 200, Ignored),
            // A network that never used the key before the flip: a thief.
            (AuthMethod::ApiKey, other, 150, UnknownSource),
            (AuthMethod::ApiKey, other, 99, Ignored),
            // A method the flip did not retire.
            (AuthMethod::Certificate, known, 150, Ignored),
            (AuthMethod::Certificate, other, 150, Ignored),
        ];
        for (method, network, at, judged) in table {
            assert_eq!(
                judge(&watch, &refused(method, network, at)),
                judged,
                "{method:?} from {network} at {at}"
            );
        }
        // A flip that retired nothing counts nothing, from anywhere.
        let nothing = Watch {
            retired: None,
            ..watch
        };
        for method in [AuthMethod::ApiKey, AuthMethod::Certificate] {
            assert_eq!(judge(&nothing, &refused(method, known, 150)), Ignored);
            assert_eq!(judge(&nothing, &refused(method, other, 150)), Ignored);
        }
    }

    #[test]
    fn a_flip_retires_the_method_its_old_mode_accepted_and_its_new_one_refuses() {
        use super::super::MigrationMode::*;
        let table = [
            (ApiKey, Dual, None),
            (ApiKey, Mtls, Some(AuthMethod::ApiKey)),
            (Dual, Mtls, Some(AuthMethod::ApiKey)),
            (Dual, ApiKey, Some(AuthMethod::Certificate)),
            (Mtls, ApiKey, Some(AuthMethod::Certificate)),
            (Mtls, Dual, None),
            (Dual, Dual, None),
        ];
        for (from, to, retired) in table {
            assert_eq!(retired_by(from, to), retired, "{from:?} -> {to:?}");
        }
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
