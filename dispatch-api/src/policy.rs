//! Authorization: what an authenticated [`Principal`] may do. Authentication says who; these
//! policies say whether that caller may do this. Handlers take the extractor for their
//! permission, so a route cannot be written without stating its policy.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload};
use serde_json::json;

use crate::auth::{Principal, ReasonCode, Refusal};
use crate::error::ApiError;
use crate::identity::AuthMethod;
use crate::registry::Scope;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Any registered, authenticated client (`/api/whoami`).
    Identify,
    /// Submit plans and read one's own (`plans:submit`).
    SubmitPlans,
    /// The admin API: scope `admin` AND a certificate. Fail closed: no key ever reaches it.
    Administer,
}

/// The policy itself, a pure function of the principal.
pub fn authorize(principal: &Principal, permission: Permission) -> Result<(), ApiError> {
    let allowed = match permission {
        Permission::Identify => true,
        Permission::SubmitPlans => principal.client.scopes.contains(&Scope::PlansSubmit),
        Permission::Administer => {
            principal.client.scopes.contains(&Scope::Admin)
                && principal.method == AuthMethod::Certificate
        }
    };
    if allowed {
        return Ok(());
    }
    Err(ApiError::Refused(Box::new(Refusal {
        reason: ReasonCode::PolicyDenied,
        client: Some(principal.client.name.to_string()),
        method: Some(principal.method),
        detail: json!({ "permission": format!("{permission:?}") }),
        readmits: None,
        evidence: None,
    })))
}

fn principal_for(request: &HttpRequest, permission: Permission) -> Result<Principal, ApiError> {
    let principal = request
        .extensions()
        .get::<Principal>()
        .cloned()
        // Only reachable if a route was mounted outside the authenticated scopes: fail closed.
        .ok_or_else(|| ApiError::refused(ReasonCode::NoCredentials))?;
    authorize(&principal, permission)?;
    Ok(principal)
}

macro_rules! authorized_extractor {
    ($(#[$doc:meta])* $name:ident, $permission:expr) => {
        $(#[$doc])*
        pub struct $name(pub Principal);

        impl FromRequest for $name {
            type Error = ApiError;
            type Future = Ready<Result<Self, ApiError>>;

            fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
                ready(principal_for(request, $permission).map($name))
            }
        }
    };
}

authorized_extractor!(
    /// Any authenticated caller.
    Authenticated,
    Permission::Identify
);
authorized_extractor!(
    /// A caller that may submit plans.
    PlanSubmitter,
    Permission::SubmitPlans
);
authorized_extractor!(
    /// An operator: scope `admin` over a client certificate.
    Operator,
    Permission::Administer
);

#[cfg(test)]
mod tests {
    //! The decision table of [`authorize`]: every permission × scope set × method × disabled.
    //! The expected answers are the rules of [`Permission`], written out row by row.

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;
    use crate::registry::{Client, ClientName, MigrationMode};

    fn principal(scopes: &[Scope], method: AuthMethod) -> Principal {
        Principal {
            client: Arc::new(Client {
                name: ClientName::parse("caller").unwrap(),
                mode: MigrationMode::Dual,
                scopes: scopes.iter().copied().collect::<BTreeSet<_>>(),
                disabled: false,
                bindings: vec![],
                api_keys: Vec::new(),
            }),
            method,
            certificate: None,
            retired_key_presented: false,
            key: None,
        }
    }

    #[test]
    fn every_row_of_the_authorization_decision_table() {
        use AuthMethod::{ApiKey, Certificate};
        use Permission::{Administer, Identify, SubmitPlans};
        use Scope::{Admin, PlansSubmit};
        // (permission, scopes, method, allowed)
        let table: &[(Permission, &[Scope], AuthMethod, bool)] = &[
            (Identify, &[], ApiKey, true),
            (Identify, &[], Certificate, true),
            (Identify, &[Admin], ApiKey, true),
            (SubmitPlans, &[], ApiKey, false),
            (SubmitPlans, &[], Certificate, false),
            (SubmitPlans, &[PlansSubmit], ApiKey, true),
            (SubmitPlans, &[PlansSubmit], Certificate, true),
            (SubmitPlans, &[Admin], Certificate, false),
            (SubmitPlans, &[Admin], ApiKey, false),
            (SubmitPlans, &[PlansSubmit, Admin], ApiKey, true),
            (SubmitPlans, &[PlansSubmit, Admin], Certificate, true),
            (Administer, &[], Certificate, false),
            (Administer, &[PlansSubmit], Certificate, false),
            (Administer, &[PlansSubmit], ApiKey, false),
            (Administer, &[Admin], Certificate, true),
            // Fail closed: no key ever reaches the admin API, whatever its client's scopes.
            (Administer, &[Admin], ApiKey, false),
            (Administer, &[PlansSubmit, Admin], Certificate, true),
            (Administer, &[PlansSubmit, Admin], ApiKey, false),
        ];
        for (permission, scopes, method, allowed) in table {
            let answer = authorize(&principal(scopes, *method), *permission);
            assert_eq!(
                answer.is_ok(),
                *allowed,
                "{permission:?} for scopes {scopes:?} over {method:?}"
            );
            if let Err(error) = answer {
                let refusal = error.refusal().expect("a denial is a refusal");
                assert_eq!(refusal.reason, ReasonCode::PolicyDenied);
                assert_eq!(refusal.client.as_deref(), Some("caller"));
                assert_eq!(refusal.method, Some(*method));
            }
        }
    }
}
