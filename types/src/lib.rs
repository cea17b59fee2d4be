//! The admin API's requests and answers, and the words they are made of, defined once for
//! dispatch-api (which serves them and documents them in its OpenAPI document) and dispatchctl
//! (which sends and reads them): the two agree by type, not by test.
//!
//! - modes, scopes and authentication methods: [`MigrationMode`], [`Scope`], [`AuthMethod`];
//! - a certificate binding as written: [`CertBindingSpec`];
//! - the admin changes' requests ([`SetMode`], [`RegisterClient`], ...) and answers
//!   ([`ModeChanged`], [`KeyRotated`], ...);
//! - what the admin API shows: a client ([`ClientView`]), the [`MigrationReport`], the
//!   [`AuditLog`], the counted [`Refusals`], the deny list ([`Revocations`]); and [`Whoami`].

mod admin;
mod binding;
mod reports;
mod views;
mod words;

pub use admin::{
    DisabledChanged, FlipGuard, KeyChange, KeyEnded, KeyRotated, KeyRotation, KeyState, KeyView,
    KeysRemoved, ModeChanged, RegisterClient, RevocationAdded, Revoke, SetBindings, SetDisabled,
    SetMode,
};
pub use binding::CertBindingSpec;
pub use reports::{
    AuditEntry, AuditLog, CertificateSeen, RefusalCount, Refusals, Revocation, Revocations, Whoami,
};
pub use views::{
    ClientList, ClientView, GuardEvidence, GuardReport, MethodUse, MigrationReport, MigrationRow,
    Registered, Renewal, RenewalState, Reopened, Usage,
};
pub use words::{AuthMethod, ClientAuth, MigrationMode, Scope, rfc3339};
