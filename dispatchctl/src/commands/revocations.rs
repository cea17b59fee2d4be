//! The deny list: a certificate or a key put on it, and the list.

use dispatch_types::{RevocationAdded, Revocations, Revoke};

use super::print;
use crate::api::Admin;
use crate::error::CtlError;
use crate::status;

/// Puts what `request` names (a certificate's fingerprint or a key's SPKI hash) on the deny
/// list.
pub async fn add(admin: &Admin, request: Revoke) -> Result<(), CtlError> {
    let answer: RevocationAdded = admin.post("/admin/revocations", &request).await?;
    print(&answer);
    Ok(())
}

/// The deny list, as a table or `--json`.
pub async fn list(admin: &Admin, json: bool) -> Result<(), CtlError> {
    let answer: Revocations = admin.get("/admin/revocations").await?;
    if json {
        print(&answer);
    } else {
        print!("{}", status::revocations_table(&answer.revocations));
    }
    Ok(())
}
