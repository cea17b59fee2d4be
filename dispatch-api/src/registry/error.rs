//! Why a registry write did not happen: one enum for every write, mapped to problem responses
//! by the application's `error` module, above this one.

use crate::storage::StorageError;

/// Why a registry write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no client is registered as `{0}`")]
    NotFound(String),
    /// No key of `client` has that id (or the key has already ended).
    #[error("`{client}` has no live key with the id `{key_id}`")]
    KeyNotFound { client: String, key_id: String },
    #[error("a client named `{0}` is already registered")]
    AlreadyExists(String),
    /// A binding of `client` would name certificates that `other` is bound to already.
    #[error(
        "a certificate binding of `{client}` overlaps one of `{other}`: one certificate would name both"
    )]
    BindingConflict { client: String, other: String },
    /// A binding's issuer could stand for more than one CA key.
    #[error("client `{client}`: {detail}")]
    AmbiguousIssuer { client: String, detail: String },
    /// The change would leave no enabled client with the `admin` scope that can authenticate by
    /// certificate: nobody could reach `/admin` again.
    #[error(
        "`{client}` is the last client that can reach /admin (enabled, admin scope, a certificate \
         binding, not in api_key mode); this change would lock every operator out. Give another \
         client that access first"
    )]
    LastAdmin { client: String },
    /// A rotation while the key an earlier one replaced is still valid: a client has at most
    /// two live keys.
    #[error(
        "`{client}` already has two live keys: `{key_id}`, replaced by the last rotation, is \
         valid until {until} (unix seconds). Wait for it to expire, or remove the keys first"
    )]
    OverlapRunning {
        client: String,
        key_id: String,
        until: i64,
    },
    /// The change would let a certificate a client presented within the evidence window in as
    /// another client, or make it ambiguous: an outage of `owner` caused by one admin call.
    #[error(
        "this change would capture the live certificate of `{owner}` ({certificate}): {outcome}. \
         Bind the client you are changing to something that certificate does not carry (another \
         CN, SPIFFE ID, DNS name, issuer key or pin)"
    )]
    CapturesLiveCertificate {
        owner: String,
        certificate: String,
        outcome: String,
    },
    /// The change would let the operator's own certificate in as another client, or make it
    /// ambiguous: the operator would be locked out by their own call.
    #[error(
        "this change would capture the certificate you are using, {certificate} (now `{owner}`): \
         {outcome}, and you would be locked out of /admin. Bind the client you are changing to \
         something that certificate does not carry"
    )]
    CapturesOwnCertificate {
        owner: String,
        certificate: String,
        outcome: String,
    },
    /// The change would keep out the certificate `client` presented within the evidence window.
    #[error(
        "`{client}` presented {certificate} recently; after this change it would be refused \
         ({outcome}). Keep a binding that names it until the client has its new certificate, or \
         set \"force\": true"
    )]
    CutsOffLiveCertificate {
        client: String,
        certificate: String,
        outcome: String,
    },
    /// A revocation of a certificate of the chain the operator is using right now.
    #[error(
        "`{fingerprint}` is a certificate of the chain you are using: revoking it would lock you \
         out (and, for a CA, every client it issued). Revoke it with another operator's certificate"
    )]
    OwnCertificate { fingerprint: String },
    /// The thread trying the change out ended without an answer (a panic, or shutdown).
    #[error("the tryout of the change stopped before it answered")]
    TryoutStopped,
    #[error(transparent)]
    Storage(#[from] StorageError),
}
