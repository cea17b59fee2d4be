//! Precedence for callers that proved something.
//!
//! A request that proved nothing (no certificate on its connection, no valid key: answered
//! 401, or 404 outside the authenticated scopes) gets a bounded share of the service, so that
//! a flood of them cannot crowd out certificate and key clients, which are never counted here:
//! - a rate, for all sources together and per source network (/24 for IPv4, /64 for IPv6):
//!   past it a request waits its turn (nginx's `limit_req` with a burst), which also paces a
//!   flooder that waits for its answers, at no cost but a timer;
//! - a bound on that wait: a request that would wait longer is answered 503 with Retry-After
//!   at once, before its body is read;
//! - a cap on connections whose requests proved nothing, for all sources and per network: a
//!   connection is counted from its first such request until it closes or one of its requests
//!   proves something; a connection past the cap gets 503 and is closed (HTTP/1.1).
//!
//! The decisions are pure functions of the state and the time ([`Precedence::admit`] takes
//! `now`), tested as such; the middleware applies them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::configuration::UnprovenSettings;

/// A source network: the /24 of an IPv4 address, the /64 of an IPv6 one (an IPv4-mapped IPv6
/// address counts as its IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network(u128);

impl Network {
    pub fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => Self(u128::from(u32::from(v4) & 0xffff_ff00)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::of(IpAddr::V4(v4)),
                None => Self(u128::from(v6) & !((1u128 << 64) - 1) | 1),
            },
        }
    }
}

/// What an unproven request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Its answer goes out now.
    Now,
    /// Its answer goes out after this wait, its turn within the rate.
    After(Duration),
    /// 503 at once: its turn is further than `max_wait` away, or its connection is past the cap.
    Shed { cap: Cap, retry_after: Duration },
}

/// Which bound a shed request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Rate,
    Connections,
}

impl Cap {
    pub fn as_str(self) -> &'static str {
        match self {
            Cap::Rate => "rate",
            Cap::Connections => "connections",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// When the next unproven request may be answered, all sources together (GCRA).
    next_global: Option<Instant>,
    next_by_network: HashMap<Network, Instant>,
    connections: usize,
    connections_by_network: HashMap<Network, usize>,
}

/// The shared state of the caps; one per process, on `AppState`.
#[derive(Debug)]
pub struct Precedence {
    settings: UnprovenSettings,
    state: Mutex<State>,
}

/// Networks remembered before the ones whose turn has passed are forgotten.
const NETWORKS_KEPT: usize = 4096;

impl Precedence {
    pub fn new(settings: UnprovenSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The turn of an unproven request from `network` at `now`, within both rates. A request
    /// given a turn takes it (the next one waits one interval more); a shed one takes nothing.
    pub fn admit(&self, network: Network, now: Instant) -> Admission {
        let global = interval(self.settings.requests_per_sec);
        let per_network = interval(self.settings.network_requests_per_sec);
        let max_wait = Duration::from_millis(self.settings.max_wait_ms);
        let mut state = self.lock();
        let global_turn = state.next_global.map_or(now, |next| next.max(now));
        let network_turn = state
            .next_by_network
            .get(&network)
            .map_or(now, |next| (*next).max(now));
        let turn = global_turn.max(network_turn);
        let wait = turn - now;
        if wait > max_wait {
            return Admission::Shed {
                cap: Cap::Rate,
                retry_after: wait,
            };
        }
        if let Some(global) = global {
            state.next_global = Some(turn + global);
        }
        if let Some(per_network) = per_network {
            if state.next_by_network.len() >= NETWORKS_KEPT {
                state.next_by_network.retain(|_, next| *next > now);
            }
            state.next_by_network.insert(network, turn + per_network);
        }
        if wait.is_zero() {
            Admission::Now
        } else {
            Admission::After(wait)
        }
    }

    /// Counts a connection from `network` among those whose requests proved nothing, unless
    /// that would pass a cap (0: none).
    fn take_connection(self: &Arc<Self>, network: Network) -> Option<ConnectionSlot> {
        let mut state = self.lock();
        let in_network = state
            .connections_by_network
            .get(&network)
            .copied()
            .unwrap_or(0);
        let (all, per_network) = (
            self.settings.max_connections,
            self.settings.network_max_connections,
        );
        if (all > 0 && state.connections >= all) || (per_network > 0 && in_network >= per_network) {
            return None;
        }
        state.connections += 1;
        state.connections_by_network.insert(network, in_network + 1);
        Some(ConnectionSlot {
            precedence: self.clone(),
            network,
        })
    }

    /// Connections counted now: all sources, and `network`'s.
    pub fn connections(&self, network: Network) -> (usize, usize) {
        let state = self.lock();
        let in_network = state.connections_by_network.get(&network).copied();
        (state.connections, in_network.unwrap_or(0))
    }
}

/// The time between two turns at `per_sec` (0: no rate).
fn interval(per_sec: u32) -> Option<Duration> {
    (per_sec > 0).then(|| Duration::from_secs(1) / per_sec)
}

/// A counted connection; dropping it (the connection closed, or proved something) uncounts it.
#[derive(Debug)]
struct ConnectionSlot {
    precedence: Arc<Precedence>,
    network: Network,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut state = self.precedence.lock();
        state.connections = state.connections.saturating_sub(1);
        if let Some(count) = state.connections_by_network.get_mut(&self.network) {
            *count -= 1;
            if *count == 0 {
                state.connections_by_network.remove(&self.network);
            }
        }
    }
}

#[derive(Debug, Default)]
enum Standing {
    /// No request on it has been judged yet.
    #[default]
    Unknown,
    /// Its requests proved nothing: it holds a slot of the connection caps.
    Unproven(
        #[expect(dead_code, reason = "held for its Drop, which gives the slot back")]
        ConnectionSlot,
    ),
    /// One of its requests proved something: never counted again.
    Proven,
}

/// A connection's standing, in its connection data: shared by its requests (one worker thread),
/// and dropped with the connection, which gives its slot back.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMark(Rc<RefCell<Standing>>, Rc<Authenticated>);

/// Whether a request on the connection authenticated, and who waits to hear it: the HTTP/2
/// connection, whose flow-control window stays small and whose streams are served two at a
/// time until then (`listener::http2`).
#[derive(Debug, Default)]
struct Authenticated {
    done: std::cell::Cell<bool>,
    heard: tokio::sync::Notify,
}

impl ConnectionMark {
    /// A request on it authenticated: it may be sent to as fast as a client that proved itself.
    /// (A known client refused, say for a retired key, has proved nothing of the kind.)
    pub fn authenticated(&self) {
        if !self.1.done.replace(true) {
            self.1.heard.notify_one();
        }
    }

    /// Returns once a request on the connection has authenticated.
    pub async fn until_authenticated(&self) {
        if self.1.done.get() {
            return;
        }
        self.1.heard.notified().await;
    }

    /// One of its requests proved something.
    pub fn prove(&self) {
        *self.0.borrow_mut() = Standing::Proven;
    }

    /// One of its requests proved nothing: whether the connection may stay (it is counted, or
    /// already was, or proved something before), or is past a connection cap.
    pub fn unproven(&self, precedence: &Arc<Precedence>, network: Network) -> bool {
        let mut standing = self.0.borrow_mut();
        match *standing {
            Standing::Proven | Standing::Unproven(_) => true,
            Standing::Unknown => match precedence.take_connection(network) {
                Some(slot) => {
                    *standing = Standing::Unproven(slot);
                    true
                }
                None => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_sec: u32, per_network: u32, max_wait_ms: u64) -> UnprovenSettings {
        UnprovenSettings {
            requests_per_sec: per_sec,
            network_requests_per_sec: per_network,
            max_wait_ms,
            max_connections: 3,
            network_max_connections: 2,
        }
    }

    fn net(address: &str) -> Network {
        Network::of(address.parse().unwrap())
    }

    #[test]
    fn networks_are_the_slash_24_and_the_slash_64() {
        assert_eq!(net("10.1.2.3"), net("10.1.2.250"));
        assert_ne!(net("10.1.2.3"), net("10.1.3.3"));
        assert_eq!(net("2001:db8:1:2::1"), net("2001:db8:1:2:ffff::9"));
        assert_ne!(net("2001:db8:1:2::1"), net("2001:db8:1:3::1"));
        assert_eq!(net("::ffff:10.1.2.3"), net("10.1.2.9"));
        // An IPv6 /64 is never mistaken for an IPv4 /24.
        assert_ne!(net("::a01:200"), net("10.1.2.0"));
    }

    #[test]
    fn within_the_rate_answers_go_out_now_then_wait_their_turn_then_are_shed() {
        let precedence = Precedence::new(settings(0, 10, 250));
        let t0 = Instant::now();
        let a = net("10.0.0.1");
        assert_eq!(precedence.admit(a, t0), Admission::Now);
        assert_eq!(
            precedence.admit(a, t0),
            Admission::After(Duration::from_millis(100))
        );
        assert_eq!(
            precedence.admit(a, t0),
            Admission::After(Duration::from_millis(200))
        );
        assert_eq!(
            precedence.admit(a, t0),
            Admission::Shed {
                cap: Cap::Rate,
                retry_after: Duration::from_millis(300)
            }
        );
        // A shed request took no turn: the next one still waits 300 ms, past the bound.
        assert!(matches!(precedence.admit(a, t0), Admission::Shed { .. }));
        // Another network has a rate of its own.
        assert_eq!(precedence.admit(net("10.0.1.1"), t0), Admission::Now);
        // Once the turns have passed, answers go out at once again.
        assert_eq!(
            precedence.admit(a, t0 + Duration::from_secs(1)),
            Admission::Now
        );
    }

    #[test]
    fn the_global_rate_holds_across_networks() {
        let precedence = Precedence::new(settings(10, 0, 150));
        let t0 = Instant::now();
        assert_eq!(precedence.admit(net("10.0.0.1"), t0), Admission::Now);
        assert_eq!(
            precedence.admit(net("10.9.0.1"), t0),
            Admission::After(Duration::from_millis(100))
        );
        assert!(matches!(
            precedence.admit(net("10.8.0.1"), t0),
            Admission::Shed { cap: Cap::Rate, .. }
        ));
    }

    #[test]
    fn no_rate_means_every_answer_goes_out_now() {
        let precedence = Precedence::new(settings(0, 0, 0));
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(precedence.admit(net("10.0.0.1"), t0), Admission::Now);
        }
    }

    #[test]
    fn connection_caps_per_network_and_in_all_and_a_closed_connection_gives_its_slot_back() {
        let precedence = Precedence::new(settings(0, 0, 0));
        let (a, b) = (net("10.0.0.1"), net("10.0.1.1"));
        let mut marks: Vec<ConnectionMark> = (0..4).map(|_| ConnectionMark::default()).collect();
        assert!(marks[0].unproven(&precedence, a));
        assert!(marks[1].unproven(&precedence, a));
        // A connection already counted stays.
        assert!(marks[0].unproven(&precedence, a));
        // The network's cap (2).
        assert!(!marks[2].unproven(&precedence, a));
        assert!(marks[2].unproven(&precedence, b));
        // The cap in all (3).
        assert!(!marks[3].unproven(&precedence, b));
        assert_eq!(precedence.connections(a), (3, 2));
        // One proves something: its slot is given back, and it is never counted again.
        marks[0].prove();
        assert_eq!(precedence.connections(a), (2, 1));
        assert!(marks[0].unproven(&precedence, a));
        assert_eq!(precedence.connections(a), (2, 1));
        // One closes (its data dropped): its slot is given back.
        drop(marks.remove(1));
        assert_eq!(precedence.connections(a), (1, 0));
        let late = ConnectionMark::default();
        assert!(late.unproven(&precedence, a));
    }

    #[test]
    fn forgotten_networks_are_only_those_whose_turn_has_passed() {
        let precedence = Precedence::new(settings(0, 1, 5_000));
        let t0 = Instant::now();
        let hot = net("192.168.0.1");
        assert_eq!(precedence.admit(hot, t0), Admission::Now);
        for i in 0..NETWORKS_KEPT as u32 {
            let other = Network::of(IpAddr::V4((0x0a00_0000 + (i << 8)).into()));
            precedence.admit(other, t0 - Duration::from_secs(5));
        }
        // The hot network still waits its turn.
        assert_eq!(
            precedence.admit(hot, t0),
            Admission::After(Duration::from_secs(1))
        );
        assert_eq!(precedence.lock().next_by_network.len(), 1);
    }
}
