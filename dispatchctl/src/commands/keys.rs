//! A client's API keys: list, rotate, end one by its id, delete them all.

use dispatch_types::{ClientView, KeyChange, KeyEnded, KeyRotated, KeyRotation, KeysRemoved};

use crate::api::Admin;
use crate::cli::KeyAction;
use crate::error::CtlError;
use crate::status::keys_table;

/// What a change of keys is given: its reason, and for a rotation the overlap and the new key's
/// lifetime.
pub struct KeyFlags {
    pub reason: Option<String>,
    pub overlap: Option<u64>,
    pub expires_in: Option<u64>,
}

pub async fn run(
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
