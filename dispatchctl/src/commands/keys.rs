//! A client's API keys: list, rotate, end one by its id, delete them all.

use clap::Subcommand;
use dispatch_types::{ClientView, KeyChange, KeyEnded, KeyRotated, KeyRotation, KeysRemoved};

use crate::api::Admin;
use crate::error::CtlError;
use crate::status::keys_table;

/// The commands on a client's keys.
#[derive(Subcommand)]
pub enum KeyCommand {
    /// List a client's API keys (id, state, expiry, use), rotate (a new key, printed once; the
    /// old one stays valid for the overlap), revoke one at once by its id (a leaked key; the
    /// other stays), or delete them all.
    Key {
        action: KeyAction,
        client: String,
        /// With `revoke`: the id of the key to end (the ID column of `key list`).
        key_id: Option<String>,
        /// Required to rotate, revoke or delete: it goes into the audit log.
        #[arg(long)]
        reason: Option<String>,
        /// How long the replaced key stays valid, e.g. `15m`, `12h`, `1d`, or seconds; `0`: it
        /// goes at once. Default: the server's `migration.key_overlap_secs`.
        #[arg(long, value_parser = crate::duration::parse_secs)]
        overlap: Option<u64>,
        /// The new key's own lifetime (same forms); default: until it is replaced.
        #[arg(long, value_parser = crate::duration::parse_secs)]
        expires_in: Option<u64>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KeyAction {
    List,
    Rotate,
    Revoke,
    Delete,
}

impl KeyCommand {
    pub async fn run(self, admin: &Admin) -> Result<u8, CtlError> {
        let Self::Key {
            action,
            client,
            key_id,
            reason,
            overlap,
            expires_in,
        } = self;
        let change = KeyFlags {
            reason,
            overlap,
            expires_in,
        };
        change_keys(admin, action, &client, key_id, change).await?;
        Ok(0)
    }
}

/// What a change of keys is given: its reason, and for a rotation the overlap and the new key's
/// lifetime.
struct KeyFlags {
    reason: Option<String>,
    overlap: Option<u64>,
    expires_in: Option<u64>,
}

async fn change_keys(
    admin: &Admin,
    action: KeyAction,
    client: &str,
    key_id: Option<String>,
    change: KeyFlags,
) -> Result<(), CtlError> {
    let path = format!("/admin/clients/{client}/api-key");
    let reason = || {
        change.reason.clone().ok_or_else(|| {
            CtlError::Config("--reason is required: it goes into the audit log".into())
        })
    };
    match action {
        KeyAction::List => {
            let answer: ClientView = admin.get(&format!("/admin/clients/{client}")).await?;
            print!("{}", keys_table(&answer.api_keys));
        }
        KeyAction::Rotate => {
            let request = KeyRotation {
                reason: reason()?,
                overlap_secs: change.overlap,
                expires_in_secs: change.expires_in,
            };
            let answer: KeyRotated = admin.post(&path, &request).await?;
            // The key itself goes to stdout alone, for `> file`; the rest to stderr.
            eprintln!(
                "{client}: new API key {} (shown once; only its SHA-256 is stored):",
                answer.api_key_id
            );
            eprint!(
                "{}",
                keys_table(answer.api_keys.as_deref().unwrap_or_default())
            );
            println!("{}", answer.api_key);
        }
        KeyAction::Revoke => {
            let key_id = key_id.ok_or_else(|| {
                CtlError::Config(
                    "key revoke needs the key's id (the ID column of `key list`)".into(),
                )
            })?;
            let path = format!("/admin/clients/{client}/api-keys/{key_id}");
            let request = KeyChange { reason: reason()? };
            let answer: KeyEnded = admin.delete(&path, &request).await?;
            println!(
                "{client}: API key {} ended now (its use is key_expired)",
                answer.ended
            );
            print!(
                "{}",
                keys_table(answer.api_keys.as_deref().unwrap_or_default())
            );
        }
        KeyAction::Delete => {
            let request = KeyChange { reason: reason()? };
            let _: KeysRemoved = admin.delete(&path, &request).await?;
            println!("{client}: API keys removed");
        }
    }
    Ok(())
}
