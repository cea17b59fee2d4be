//! What an admin change carries: who made it and why, and the tryout it must pass first.

use super::{ClientName, RegistryError, RegistrySnapshot};
use crate::identity::{IssuerIndex, VerifiedCertificate};

/// Who made an admin change and why: recorded with the change.
pub struct Change<'a> {
    pub actor: &'a str,
    pub reason: &'a str,
    /// The operator's verified certificate and the issuers it was judged against, when the
    /// change comes through the admin API: a change that would take the operator's own way in
    /// (and leave no other) is refused.
    pub operator: Option<(&'a VerifiedCertificate, &'a IssuerIndex)>,
    /// The live certificates the change is tried against before it is made (the admin API's
    /// changes; `auth::tryout`). Bootstrap has none.
    pub tryout: Option<&'a dyn Tryout>,
}

/// What a change means to do, for [`Tryout::check`]: which client it is about, and whether
/// keeping that client's own certificate out is its purpose.
#[derive(Debug, Clone, Copy)]
pub enum Intent<'a> {
    /// New clients: they can only capture, never cut off.
    Register,
    /// New bindings: keeping the client's own live certificate out is a mistake unless forced.
    Bindings { client: &'a ClientName, force: bool },
    /// A mode change or a disable: keeping the client's own certificate out may be the point.
    Switch(&'a ClientName),
    /// A deny-list entry: keeping certificates out is the point.
    Revocation,
}

/// What an update of one client is: its audit event's reason, and what it means to do (for the
/// tryout; `None`: nothing a certificate proves changes).
pub(super) struct Update<'a> {
    pub(super) event: &'a str,
    pub(super) intent: Option<Intent<'a>>,
}

/// A registry change tried against live certificates before it is made: the registry as it is
/// and as it would be, and what the change means to do. Implemented above the registry, where
/// authentication is (`auth::tryout`), and called under the registry's write lock so that
/// nothing this process does changes between the try and the write. (Another replica's write to
/// another client can: the checks see this replica's snapshot, as docs/operator-guide.md says
/// of all admin checks on PostgreSQL.)
pub trait Tryout: Sync {
    fn check(
        &self,
        now: &RegistrySnapshot,
        will_be: &RegistrySnapshot,
        intent: Intent<'_>,
    ) -> Result<(), RegistryError>;
}
