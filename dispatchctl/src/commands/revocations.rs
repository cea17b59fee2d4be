//! The deny list: a certificate or a key put on it, and the list.

use clap::Subcommand;
use dispatch_types::{RevocationAdded, Revocations, Revoke};

use super::print;
use crate::api::Admin;
use crate::error::CtlError;
use crate::status;

/// The commands on the deny list.
#[derive(Subcommand)]
pub enum RevocationCommand {
    /// The certificate deny list, as a table (`--json` for scripts).
    Revocations {
        #[arg(long)]
        json: bool,
    },
    /// Put a certificate (SHA-256 fingerprint) on the deny list; effective on the next request.
    Revoke {
        fingerprint: String,
        #[arg(long)]
        reason: String,
    },
    /// Put a key on the deny list (SHA-256 of its SubjectPublicKeyInfo: `openssl x509 -noout
    /// -pubkey | openssl pkey -pubin -outform der | sha256sum`): every certificate of that key
    /// is refused from the next request on, renewals that reused it included (a stolen key).
    DenyKey {
        spki_sha256: String,
        #[arg(long)]
        reason: String,
    },
}

impl RevocationCommand {
    pub async fn run(self, admin: &Admin) -> Result<u8, CtlError> {
        match self {
            Self::Revocations { json } => list(admin, json).await?,
            Self::Revoke {
                fingerprint,
                reason,
            } => {
                let request = Revoke {
                    fingerprint: Some(fingerprint),
                    spki_sha256: None,
                    reason,
                };
                add(admin, request).await?;
            }
            Self::DenyKey {
                spki_sha256,
                reason,
            } => {
                let request = Revoke {
                    fingerprint: None,
                    spki_sha256: Some(spki_sha256),
                    reason,
                };
                add(admin, request).await?;
            }
        }
        Ok(0)
    }
}

/// Puts what `request` names (a certificate's fingerprint or a key's SPKI hash) on the deny
/// list.
async fn add(admin: &Admin, request: Revoke) -> Result<(), CtlError> {
    let answer: RevocationAdded = admin.post("/admin/revocations", &request).await?;
    print(&answer);
    Ok(())
}

/// The deny list, as a table or `--json`.
async fn list(admin: &Admin, json: bool) -> Result<(), CtlError> {
    let answer: Revocations = admin.get("/admin/revocations").await?;
    if json {
        print(&answer);
    } else {
        print!("{}", status::revocations_table(&answer.revocations));
    }
    Ok(())
}
