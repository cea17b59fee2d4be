//! The words the admin API is made of: where a client is in its migration, what it may do,
//! and how a caller authenticated.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a client is in its move from the shared key to mTLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MigrationMode {
    /// Only the API key is accepted (the starting point).
    ApiKey,
    /// Key or certificate: the transition.
    Dual,
    /// Certificate only; the key is retired and any use of it is an alert.
    Mtls,
}

impl MigrationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Dual => "dual",
            Self::Mtls => "mtls",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "api_key" => Ok(Self::ApiKey),
            "dual" => Ok(Self::Dual),
            "mtls" => Ok(Self::Mtls),
            other => Err(format!("`{other}` is not a mode (api_key, dual, mtls)")),
        }
    }

    /// Whether a client in this mode is let in by `method`.
    pub fn accepts(self, method: AuthMethod) -> bool {
        !matches!(
            (self, method),
            (Self::Mtls, AuthMethod::ApiKey) | (Self::ApiKey, AuthMethod::Certificate)
        )
    }
}

/// A permission a client holds.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum Scope {
    #[serde(rename = "plans:submit")]
    PlansSubmit,
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PlansSubmit => "plans:submit",
            Self::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "plans:submit" => Ok(Self::PlansSubmit),
            "admin" => Ok(Self::Admin),
            other => Err(format!("`{other}` is not a scope (plans:submit, admin)")),
        }
    }
}

/// How a principal authenticated.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ApiKey,
    Certificate,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Certificate => "certificate",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "api_key" => Some(Self::ApiKey),
            "certificate" => Some(Self::Certificate),
            _ => None,
        }
    }
}

/// Whether the listener asks for, or insists on, a client certificate (`tls.client_auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// Key clients and certificate clients side by side (the migration).
    #[default]
    Optional,
    /// Every connection must present a valid certificate (the end state).
    Required,
}

/// A time as the API writes it: RFC 3339 in UTC, from Unix seconds (`None` out of range).
pub fn rfc3339(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_is_written_in_rfc_3339_utc() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339(1_780_000_000).as_deref(),
            Some("2026-05-28T20:26:40Z")
        );
        assert_eq!(rfc3339(i64::MAX), None);
    }

    #[test]
    fn each_mode_accepts_the_methods_of_its_stage_of_the_migration() {
        use AuthMethod::{ApiKey, Certificate};
        let table = [
            (MigrationMode::ApiKey, ApiKey, true),
            (MigrationMode::ApiKey, Certificate, false),
            (MigrationMode::Dual, ApiKey, true),
            (MigrationMode::Dual, Certificate, true),
            (MigrationMode::Mtls, ApiKey, false),
            (MigrationMode::Mtls, Certificate, true),
        ];
        for (mode, method, accepted) in table {
            assert_eq!(mode.accepts(method), accepted, "{mode:?} {method:?}");
        }
    }

    #[test]
    fn the_words_read_back_as_they_are_written() {
        for mode in [
            MigrationMode::ApiKey,
            MigrationMode::Dual,
            MigrationMode::Mtls,
        ] {
            assert_eq!(MigrationMode::parse(mode.as_str()), Ok(mode));
        }
        for scope in [Scope::PlansSubmit, Scope::Admin] {
            assert_eq!(Scope::parse(scope.as_str()), Ok(scope));
        }
        for method in [AuthMethod::ApiKey, AuthMethod::Certificate] {
            assert_eq!(AuthMethod::parse(method.as_str()), Some(method));
        }
        assert!(MigrationMode::parse("mTLS").is_err());
        assert!(Scope::parse("plans").is_err());
        assert_eq!(AuthMethod::parse("password"), None);
    }
}
