//! dispatch-api end to end: each case on a new connection, asserting the status AND the reason
//! code (through the audit log or metrics).

mod admin;
mod authentication;
mod captures;
mod guarded_flip;
mod handshake;
mod identity;
mod interop;
mod key_rotation;
mod lifecycle;
mod listener;
mod lockout;
mod plans;
mod stock_clients;
mod trust_edges;
