//! The deny list: a certificate or a key put on it, and the list.

use serde_json::Value;

use super::print;
use crate::api::Admin;
use crate::error::CtlError;
use crate::status;

/// Puts what `body` names (a certificate's fingerprint or a key's SPKI hash) on the deny list.
pub async fn add(admin: &Admin, body: Value) -> Result<(), CtlError> {
    let answer = admin.post("/admin/revocations", body).await?;
    print(&answer);
    Ok(())
}

/// The deny list, as a table or `--json`.
pub async fn list(admin: &Admin, json: bool) -> Result<(), CtlError> {
    let answer = admin.get("/admin/revocations").await?;
    if json {
        print(&answer);
    } else {
        print!("{}", status::revocations_table(&answer["revocations"]));
    }
    Ok(())
}
