//! A client's API keys: list, rotate, end one by its id, delete them all.

use serde_json::json;

use crate::api::Admin;
use crate::cli::KeyAction;
use crate::error::CtlError;
use crate::status::keys_table;

/// What a change of keys is given: its reason, and for a rotation the overlap and the new key's
/// lifetime.
pub struct KeyChange {
    pub reason: Option<String>,
    pub overlap: Option<u64>,
    pub expires_in: Option<u64>,
}

pub async fn run(
    admin: &Admin,
    action: KeyAction,
    client: &str,
    key_id: Option<String>,
    change: KeyChange,
) -> Result<(), CtlError> {
    let path = format!("/admin/clients/{client}/api-key");
    let reason = || {
        change.reason.clone().ok_or_else(|| {
            CtlError::Config("--reason is required: it goes into the audit log".into())
        })
    };
    match action {
        KeyAction::List => {
            let answer = admin.get(&format!("/admin/clients/{client}")).await?;
            print!("{}", keys_table(&answer["api_keys"]));
        }
        KeyAction::Rotate => {
            let mut body = json!({"reason": reason()?});
            if let Some(secs) = change.overlap {
                body["overlap_secs"] = json!(secs);
            }
            if let Some(secs) = change.expires_in {
                body["expires_in_secs"] = json!(secs);
            }
            let answer = admin.post(&path, body).await?;
            // The key itself goes to stdout alone, for `> file`; the rest to stderr.
            eprintln!(
                "{client}: new API key {} (shown once; only its SHA-256 is stored):",
                answer["api_key_id"].as_str().unwrap_or_default()
            );
            eprint!("{}", keys_table(&answer["api_keys"]));
            println!("{}", answer["api_key"].as_str().unwrap_or_default());
        }
        KeyAction::Revoke => {
            let key_id = key_id.ok_or_else(|| {
                CtlError::Config(
                    "key revoke needs the key's id (the ID column of `key list`)".into(),
                )
            })?;
            let answer = admin
                .delete(
                    &format!("/admin/clients/{client}/api-keys/{key_id}"),
                    json!({"reason": reason()?}),
                )
                .await?;
            println!("{client}: API key {key_id} ended now (its use is key_expired)");
            print!("{}", keys_table(&answer["api_keys"]));
        }
        KeyAction::Delete => {
            admin.delete(&path, json!({"reason": reason()?})).await?;
            println!("{client}: API keys removed");
        }
    }
    Ok(())
}
