//! A certificate binding as written: in the bootstrap file, to the admin API, in its answers.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A binding as written in the bootstrap file or sent to the admin API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertBindingSpec {
    pub issuer: Option<String>,
    pub issuer_spki_sha256: Option<String>,
    // One field per kind of name (dispatch-api's `registry::Kind`), named as its `field`.
    pub subject_cn: Option<String>,
    pub spiffe_id: Option<String>,
    /// A dNSName SAN of the certificate, compared case-insensitively.
    pub dns_name: Option<String>,
    #[serde(default)]
    pub fingerprints: Vec<String>,
}
