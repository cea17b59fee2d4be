//! What an admin change carries: who made it and why, and the tryout it must pass first.

use std::sync::Arc;

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
    pub tryout: Option<Arc<dyn Tryout>>,
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
/// nothing this process does changes between the try and the write, and on PostgreSQL under the
/// advisory lock every replica's checked writes take, on a snapshot brought up to the stored
/// version (`Registry::begin_checked_write`), so that no other replica's change does either.
pub trait Tryout: Send + Sync {
    fn check(
        &self,
        now: &RegistrySnapshot,
        will_be: &RegistrySnapshot,
        intent: Intent<'_>,
    ) -> Result<(), RegistryError>;
}

/// [`Intent`] as the blocking thread of [`try_out`] takes it.
enum OwnedIntent {
    Register,
    Bindings { client: ClientName, force: bool },
    Switch(ClientName),
    Revocation,
}

impl OwnedIntent {
    fn of(intent: Intent<'_>) -> Self {
        match intent {
            Intent::Register => Self::Register,
            Intent::Bindings { client, force } => Self::Bindings {
                client: client.clone(),
                force,
            },
            Intent::Switch(client) => Self::Switch(client.clone()),
            Intent::Revocation => Self::Revocation,
        }
    }

    fn intent(&self) -> Intent<'_> {
        match self {
            Self::Register => Intent::Register,
            Self::Bindings { client, force } => Intent::Bindings {
                client,
                force: *force,
            },
            Self::Switch(client) => Intent::Switch(client),
            Self::Revocation => Intent::Revocation,
        }
    }
}

/// Runs `tryout` on a blocking thread, not on the event loop of the worker that took the admin
/// call: with tens of thousands of live certificates, authenticating each on the registry as
/// it is and as it would be takes long enough to stall that worker's other connections.
pub(super) async fn try_out(
    tryout: &Arc<dyn Tryout>,
    now: Arc<RegistrySnapshot>,
    will_be: RegistrySnapshot,
    intent: Intent<'_>,
) -> Result<(), RegistryError> {
    let tryout = tryout.clone();
    let intent = OwnedIntent::of(intent);
    tokio::task::spawn_blocking(move || tryout.check(&now, &will_be, intent.intent()))
        .await
        .map_err(|_| RegistryError::TryoutStopped)?
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::thread::ThreadId;

    use super::*;

    /// A tryout that notes the thread and the intent it ran with, and refuses.
    #[derive(Default)]
    struct Noting(Mutex<Option<(ThreadId, String)>>);

    impl Tryout for Noting {
        fn check(
            &self,
            _now: &RegistrySnapshot,
            _will_be: &RegistrySnapshot,
            intent: Intent<'_>,
        ) -> Result<(), RegistryError> {
            *self.0.lock().unwrap() = Some((std::thread::current().id(), format!("{intent:?}")));
            Err(RegistryError::LastAdmin {
                client: "noted".into(),
            })
        }
    }

    #[tokio::test]
    async fn a_tryout_runs_off_the_callers_thread_with_its_intent_and_its_answer_comes_back() {
        let noting = Arc::new(Noting::default());
        let tryout: Arc<dyn Tryout> = noting.clone();
        let snapshot = Arc::new(RegistrySnapshot::new(vec![], HashSet::new()));
        let client = ClientName::parse("worker").unwrap();
        let intents = [
            Intent::Register,
            Intent::Bindings {
                client: &client,
                force: true,
            },
            Intent::Switch(&client),
            Intent::Revocation,
        ];
        for intent in intents {
            let answer = try_out(
                &tryout,
                snapshot.clone(),
                RegistrySnapshot::clone(&snapshot),
                intent,
            )
            .await;
            assert!(
                matches!(answer, Err(RegistryError::LastAdmin { .. })),
                "{answer:?}"
            );
            let (thread, seen) = noting.0.lock().unwrap().take().unwrap();
            assert_ne!(thread, std::thread::current().id(), "on a blocking thread");
            assert_eq!(seen, format!("{intent:?}"));
        }
    }
}
