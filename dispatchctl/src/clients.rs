//! A registration's request, from the command line: the bindings given as JSON (`--binding`,
//! repeated) and the one binding spelled with flags (`--issuer`, `--cn`, `--spiffe`, `--dns`,
//! `--issuer-spki`, `--pin`), which is what an operator usually types.

use dispatch_types::CertBindingSpec;

use crate::error::CtlError;

/// One certificate binding spelled with flags; all empty means none.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct BindingFlags {
    /// The issuing CA's name, as `openssl x509 -noout -issuer` prints it.
    #[arg(long)]
    pub issuer: Option<String>,
    /// The certificate's one subject CN.
    #[arg(long = "cn")]
    pub subject_cn: Option<String>,
    /// The certificate's one URI SAN (SPIFFE ID).
    #[arg(long = "spiffe")]
    pub spiffe_id: Option<String>,
    /// One of the certificate's dNSName SANs (as ACME CAs name a workload).
    #[arg(long = "dns")]
    pub dns_name: Option<String>,
    /// SHA-256 (hex) of the issuing CA's public key: which CA of that name.
    #[arg(long)]
    pub issuer_spki: Option<String>,
    /// SHA-256 fingerprint (hex) of one certificate, repeated: pins.
    #[arg(long = "pin")]
    pub pins: Vec<String>,
}

impl BindingFlags {
    /// The binding as the admin API takes it, or `None` when no flag was given. A name or a
    /// pin is needed: an issuer alone would bind every certificate that CA signed.
    pub fn binding(&self) -> Result<Option<CertBindingSpec>, CtlError> {
        let named =
            self.subject_cn.is_some() || self.spiffe_id.is_some() || self.dns_name.is_some();
        if !named && self.pins.is_empty() {
            if self.issuer.is_some() || self.issuer_spki.is_some() {
                return Err(CtlError::Config(
                    "--issuer needs --cn, --spiffe, --dns or --pin: which certificates of that CA"
                        .into(),
                ));
            }
            return Ok(None);
        }
        if named && self.issuer.is_none() {
            return Err(CtlError::Config(
                "--cn, --spiffe and --dns need --issuer: a name is bound together with the CA that signed it"
                    .into(),
            ));
        }
        Ok(Some(CertBindingSpec {
            issuer: self.issuer.clone(),
            issuer_spki_sha256: self.issuer_spki.clone(),
            subject_cn: self.subject_cn.clone(),
            spiffe_id: self.spiffe_id.clone(),
            dns_name: self.dns_name.clone(),
            fingerprints: self.pins.clone(),
        }))
    }
}

/// The bindings of a registration: each `--binding` JSON object, then the flags' binding.
pub fn bindings(
    json_bindings: &[String],
    flags: &BindingFlags,
) -> Result<Vec<CertBindingSpec>, CtlError> {
    let mut bindings = json_bindings
        .iter()
        .map(|text| {
            serde_json::from_str(text).map_err(|e| {
                CtlError::Config(format!("--binding must be a JSON object of a binding: {e}"))
            })
        })
        .collect::<Result<Vec<CertBindingSpec>, _>>()?;
    bindings.extend(flags.binding()?);
    Ok(bindings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding as the admin API would read it from `json`.
    fn spec(json: &str) -> Option<CertBindingSpec> {
        Some(serde_json::from_str(json).unwrap())
    }

    fn flags(
        issuer: Option<&str>,
        cn: Option<&str>,
        spiffe: Option<&str>,
        pins: &[&str],
    ) -> BindingFlags {
        BindingFlags {
            issuer: issuer.map(Into::into),
            subject_cn: cn.map(Into::into),
            spiffe_id: spiffe.map(Into::into),
            dns_name: None,
            issuer_spki: None,
            pins: pins.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn flags_make_one_binding_with_only_the_fields_given() {
        let binding = flags(Some("CN=Dev CA"), Some("billing"), None, &[])
            .binding()
            .unwrap();
        assert_eq!(
            binding,
            spec(r#"{"issuer": "CN=Dev CA", "subject_cn": "billing"}"#)
        );
        let mut with_key = flags(Some("CN=Dev CA"), None, Some("spiffe://d/b"), &["ab"]);
        with_key.issuer_spki = Some("cd".into());
        assert_eq!(
            with_key.binding().unwrap(),
            spec(
                r#"{"issuer": "CN=Dev CA", "spiffe_id": "spiffe://d/b",
                    "issuer_spki_sha256": "cd", "fingerprints": ["ab"]}"#
            )
        );
    }

    #[test]
    fn dns_makes_a_binding_by_dns_name_and_needs_the_issuer() {
        let mut dns = flags(Some("CN=Dev CA"), None, None, &[]);
        dns.dns_name = Some("worker.internal".into());
        assert_eq!(
            dns.binding().unwrap(),
            spec(r#"{"issuer": "CN=Dev CA", "dns_name": "worker.internal"}"#)
        );
        dns.issuer = None;
        assert!(dns.binding().is_err());
    }

    #[test]
    fn no_flag_is_no_binding() {
        assert_eq!(BindingFlags::default().binding().unwrap(), None);
    }

    #[test]
    fn a_pin_alone_is_a_pin_only_binding() {
        assert_eq!(
            flags(None, None, None, &["ab"]).binding().unwrap(),
            spec(r#"{"fingerprints": ["ab"]}"#)
        );
    }

    #[test]
    fn an_issuer_without_a_name_or_pin_is_refused_rather_than_binding_the_whole_ca() {
        let error = flags(Some("CN=Dev CA"), None, None, &[])
            .binding()
            .unwrap_err();
        assert!(
            error.to_string().contains("--cn, --spiffe, --dns or --pin"),
            "{error}"
        );
    }

    #[test]
    fn a_name_without_its_issuer_is_refused() {
        let error = flags(None, Some("billing"), None, &[])
            .binding()
            .unwrap_err();
        assert!(error.to_string().contains("need --issuer"), "{error}");
    }

    #[test]
    fn json_bindings_come_first_and_must_be_bindings() {
        let both = bindings(
            &[r#"{"issuer": "CN=A", "subject_cn": "a"}"#.into()],
            &flags(Some("CN=B"), Some("b"), None, &[]),
        )
        .unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[0].subject_cn.as_deref(), Some("a"));
        assert_eq!(both[1].subject_cn.as_deref(), Some("b"));
        assert!(bindings(&["[1]".into()], &BindingFlags::default()).is_err());
        // A field no binding has is refused here, before anything is sent.
        assert!(bindings(&[r#"{"subject": "a"}"#.into()], &BindingFlags::default()).is_err());
        assert!(bindings(&["{".into()], &BindingFlags::default()).is_err());
    }
}
