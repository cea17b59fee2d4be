//! A client's API key: rotate (the new key is in the response only) or remove.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyChange {
    reason: String,
}

/// Issues a new key, replacing the old one at once. The key is in this response only.
pub async fn rotate_api_key(
    Operator(principal): Operator,
    name: web::Path<String>,
    body: web::Json<KeyChange>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = client_name(&name)?;
    let reason = required_reason(&body.reason)?;
    let key = generate_api_key();
    let actor = actor(&principal);
    state
        .registry
        .set_api_key(
            &name,
            Some(ApiKeyHash::of(&key)),
            Change {
                actor: &actor,
                reason,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "client": name.as_str(),
        "api_key": key.expose_secret(),
        "api_key_note": "shown once; only its SHA-256 is stored",
    })))
}

pub async fn remove_api_key(
    Operator(principal): Operator,
    name: web::Path<String>,
    body: web::Json<KeyChange>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = client_name(&name)?;
    let reason = required_reason(&body.reason)?;
    let actor = actor(&principal);
    state
        .registry
        .set_api_key(
            &name,
            None,
            Change {
                actor: &actor,
                reason,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "client": name.as_str(), "has_api_key": false })))
}
