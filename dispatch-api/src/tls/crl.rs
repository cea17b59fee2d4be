//! Certificate revocation lists as RFC 5280 (§5.2, §5.3, §6.3) means them, not as "a list of
//! serials": a CRL is only used for what it covers.
//!
//! - A **complete** CRL of a CA covers every certificate the CA signed. Of several complete
//!   CRLs of one key and one scope, the one with the highest CRL number counts, then the latest
//!   thisUpdate (a re-signed CRL with an earlier number but a later date does not win).
//! - A **delta** CRL (Delta CRL Indicator, what AD CS publishes between base CRLs) lists only
//!   the changes since its base: it is merged with the complete CRL of the same key and scope
//!   whose number is at least the delta's base CRL number, never used alone. A delta whose base
//!   is not loaded is refused at load, naming the file; one no newer than the complete CRL is
//!   already in it and is left out.
//! - A **partitioned** CRL (Issuing Distribution Point) covers only the certificates of its
//!   partition: those whose CRL Distribution Points name its distribution point, and only user
//!   or only CA certificates if it says so. A certificate signed by a key that has CRLs, none of
//!   which covers it, has no known status and is refused (a missing partition must not read as
//!   "not revoked").
//! - What this service cannot apply completely is refused at load with the file and the
//!   extension named: a CRL partitioned by reason (onlySomeReasons), an indirect CRL (or an
//!   entry naming another certificate issuer), one for attribute certificates, a distribution
//!   point relative to the issuer's name, and any unknown critical extension.
//! - An entry's reason keyCompromise is kept: the key of that certificate is stolen, and
//!   `tls::watch` puts it on the deny list so its other certificates go too.
//!
//! One CRL as loaded is here; the CRLs of one signing key combined, and what they say of a
//! certificate, in `signer`.

use std::collections::HashMap;
use std::path::PathBuf;

use time::OffsetDateTime;
use x509_parser::extensions::{DistributionPointName, ParsedExtension, X509Extension};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::identity::{CertificateScope, DistinguishedName, general_name_text};

mod signer;

pub(in crate::tls) use signer::{CrlVerdict, SignerCrls};

const CRL_NUMBER: &str = "2.5.29.20";
const DELTA_CRL_INDICATOR: &str = "2.5.29.27";
const ISSUING_DISTRIBUTION_POINT: &str = "2.5.29.28";
const REASON_CODE: &str = "2.5.29.21";
const HOLD_INSTRUCTION: &str = "2.5.29.23";
const INVALIDITY_DATE: &str = "2.5.29.24";
const CERTIFICATE_ISSUER: &str = "2.5.29.29";
const AUTHORITY_KEY_IDENTIFIER: &str = "2.5.29.35";
/// reasonCode removeFromCRL: in a delta CRL, the certificate is no longer revoked (it was on
/// hold).
const REMOVE_FROM_CRL: u8 = 8;
/// reasonCode keyCompromise: the private key is known or suspected stolen, so every certificate
/// of that key is as good as revoked (`registry::revocations` puts the key on the deny list).
const KEY_COMPROMISE: u8 = 1;

/// What a CRL says of one serial: listed as removeFromCRL (a delta lifting a hold), or revoked,
/// and then whether for keyCompromise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Removed,
    Revoked { key_compromise: bool },
}

/// A CRL number: a non-negative INTEGER of up to 20 octets.
pub(super) type CrlNumber = x509_parser::num_bigint::BigUint;

/// The Delta CRL Indicator's value: a DER INTEGER, non-negative, and nothing after it.
fn der_integer(der: &[u8]) -> Option<CrlNumber> {
    // As x509-parser reads the CRL Number, which has the same syntax.
    match x509_parser::der_parser::der::parse_der_integer(der) {
        Ok(([], integer)) => integer.as_biguint().ok(),
        _ => None,
    }
}

/// Which certificates a CRL speaks about (its Issuing Distribution Point, if any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Scope {
    /// The extension's encoding, as a delta and its base must share it.
    idp: Option<Vec<u8>>,
    /// The distribution point's names: only certificates whose CRL Distribution Points name
    /// one of them are covered. Empty: no such narrowing.
    distribution_points: Vec<String>,
    only_user_certs: bool,
    only_ca_certs: bool,
}

impl Scope {
    fn covers(&self, cert: &CertificateScope) -> bool {
        if (self.only_user_certs && cert.is_ca) || (self.only_ca_certs && !cert.is_ca) {
            return false;
        }
        self.distribution_points.is_empty()
            || cert
                .distribution_points
                .iter()
                .any(|name| self.distribution_points.contains(name))
    }
}

/// A CRL as loaded, its kind and scope read from its extensions.
#[derive(Debug)]
pub(super) struct Crl {
    pub path: PathBuf,
    pub issuer: DistinguishedName,
    pub der: Vec<u8>,
    /// Serials as encoded, each with what the CRL says of it.
    entries: HashMap<Vec<u8>, Entry>,
    pub this_update: i64,
    pub next_update: Option<OffsetDateTime>,
    number: Option<CrlNumber>,
    /// The Authority Key Identifier's key identifier: which key signed it, to name in an error
    /// when that key is not in the bundle.
    pub authority_key_id: Option<Vec<u8>>,
    /// For a delta CRL, the number of the complete CRL it starts from.
    delta_of: Option<CrlNumber>,
    scope: Scope,
}

impl Crl {
    /// Parses a CRL and refuses what cannot be applied completely; the error is the detail for
    /// a message that names the file.
    pub fn parse(path: PathBuf, der: Vec<u8>) -> Result<Self, String> {
        let (_, crl) = CertificateRevocationList::from_der(&der).map_err(|e| e.to_string())?;
        let mut number = None;
        let mut delta_of = None;
        let mut scope = Scope::default();
        let mut authority_key_id = None;
        for ext in crl.extensions() {
            let oid = ext.oid.to_id_string();
            match oid.as_str() {
                CRL_NUMBER => {
                    number = Some(
                        crl.crl_number()
                            .cloned()
                            .ok_or("its CRL Number extension cannot be read")?,
                    );
                }
                DELTA_CRL_INDICATOR => {
                    delta_of = Some(
                        der_integer(ext.value)
                            .ok_or("its Delta CRL Indicator cannot be read as a CRL number")?,
                    );
                }
                ISSUING_DISTRIBUTION_POINT => scope = read_scope(ext)?,
                AUTHORITY_KEY_IDENTIFIER => {
                    if let ParsedExtension::AuthorityKeyIdentifier(aki) = ext.parsed_extension() {
                        authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
                    }
                }
                // Whatever else (authority key identifier, freshest CRL, AD CS's own) is read
                // past unless it is critical: then it may change what the CRL means.
                _ if ext.critical => {
                    return Err(format!(
                        "it carries a critical extension this service cannot apply ({oid}); RFC 5280 §5.2 forbids using such a CRL"
                    ));
                }
                _ => {}
            }
        }
        if delta_of.is_some() && number.is_none() {
            return Err(
                "it is a delta CRL without a CRL Number (RFC 5280 §5.2.4 requires one)".into(),
            );
        }
        let mut entries = HashMap::new();
        for revoked in crl.iter_revoked_certificates() {
            let mut entry = Entry::Revoked {
                key_compromise: false,
            };
            for ext in revoked.extensions() {
                let oid = ext.oid.to_id_string();
                match oid.as_str() {
                    REASON_CODE => {
                        entry = match ext.parsed_extension() {
                            ParsedExtension::ReasonCode(code) if code.0 == REMOVE_FROM_CRL => {
                                Entry::Removed
                            }
                            ParsedExtension::ReasonCode(code) => Entry::Revoked {
                                key_compromise: code.0 == KEY_COMPROMISE,
                            },
                            _ => entry,
                        };
                    }
                    CERTIFICATE_ISSUER => {
                        return Err(format!(
                            "the entry for serial {} names another certificate issuer ({CERTIFICATE_ISSUER}): indirect CRLs are not supported",
                            revoked.raw_serial_as_string()
                        ));
                    }
                    HOLD_INSTRUCTION | INVALIDITY_DATE => {}
                    _ if ext.critical => {
                        return Err(format!(
                            "the entry for serial {} carries a critical extension this service cannot apply ({oid})",
                            revoked.raw_serial_as_string()
                        ));
                    }
                    _ => {}
                }
            }
            entries.insert(revoked.raw_serial().to_vec(), entry);
        }
        Ok(Self {
            path,
            issuer: DistinguishedName::from_x509(crl.issuer()),
            entries,
            this_update: crl.last_update().timestamp(),
            next_update: crl
                .next_update()
                .and_then(|t| OffsetDateTime::from_unix_timestamp(t.timestamp()).ok()),
            number,
            authority_key_id,
            delta_of,
            scope,
            der,
        })
    }

    /// Whether `key`'s signature is on this CRL.
    pub fn signed_by(&self, spki_der: &[u8]) -> bool {
        use x509_parser::x509::SubjectPublicKeyInfo;
        let Ok((_, crl)) = CertificateRevocationList::from_der(&self.der) else {
            return false;
        };
        SubjectPublicKeyInfo::from_der(spki_der)
            .is_ok_and(|(_, spki)| crl.verify_signature(&spki).is_ok())
    }

    fn is_delta(&self) -> bool {
        self.delta_of.is_some()
    }

    /// What orders complete CRLs of one scope: CRL number, then thisUpdate.
    fn recency(&self) -> (Option<&CrlNumber>, i64) {
        (self.number.as_ref(), self.this_update)
    }

    fn revoked(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.entries
            .iter()
            .filter(|(_, entry)| **entry != Entry::Removed)
            .map(|(serial, _)| serial)
    }

    fn compromised(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.entries
            .iter()
            .filter(|(_, entry)| {
                **entry
                    == Entry::Revoked {
                        key_compromise: true,
                    }
            })
            .map(|(serial, _)| serial)
    }
}

fn read_scope(ext: &X509Extension<'_>) -> Result<Scope, String> {
    let ParsedExtension::IssuingDistributionPoint(idp) = ext.parsed_extension() else {
        return Err("its Issuing Distribution Point extension cannot be read".into());
    };
    let refuse = |what: &str| {
        Err(format!(
            "its Issuing Distribution Point ({ISSUING_DISTRIBUTION_POINT}) {what}, which this service does not apply; load the CA's complete CRL instead"
        ))
    };
    if idp.only_some_reasons.is_some() {
        return refuse("covers only some revocation reasons (onlySomeReasons)");
    }
    if idp.indirect_crl {
        return refuse("makes it an indirect CRL (indirectCRL)");
    }
    if idp.only_contains_attribute_certs {
        return refuse("limits it to attribute certificates (onlyContainsAttributeCerts)");
    }
    if idp.only_contains_user_certs && idp.only_contains_ca_certs {
        return refuse("limits it to user and to CA certificates at once");
    }
    let distribution_points = match &idp.distribution_point {
        None => Vec::new(),
        Some(DistributionPointName::FullName(names)) => {
            names.iter().map(general_name_text).collect()
        }
        Some(DistributionPointName::NameRelativeToCRLIssuer(_)) => {
            return refuse("names its distribution point relative to the issuer");
        }
    };
    Ok(Scope {
        idp: Some(ext.value.to_vec()),
        distribution_points,
        only_user_certs: idp.only_contains_user_certs,
        only_ca_certs: idp.only_contains_ca_certs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_crl_indicator_is_read_as_a_non_negative_der_integer() {
        let number = |n: u32| Some(CrlNumber::from(n));
        assert_eq!(der_integer(&[2, 1, 7]), number(7));
        assert_eq!(der_integer(&[2, 2, 0, 0x80]), number(0x80));
        // Numbers compare by value, whatever their length.
        assert!(der_integer(&[2, 1, 0x7f]) < der_integer(&[2, 2, 0, 0x80]));
        assert!(der_integer(&[2, 2, 0, 0xff]) < der_integer(&[2, 2, 1, 0]));
        assert_eq!(der_integer(&[2, 1, 0x80]), None, "negative");
        assert_eq!(der_integer(&[2, 2, 7]), None, "short");
        assert_eq!(der_integer(&[2, 1, 7, 0]), None, "trailing data");
        assert_eq!(der_integer(&[4, 1, 7]), None, "not an INTEGER");
        assert_eq!(der_integer(&[2, 0]), None, "empty");
        // 0x80 is no short-form length (it marks the indefinite form, which DER forbids).
        let mut long = vec![2, 0x80];
        long.extend([1u8; 0x80]);
        assert_eq!(der_integer(&long), None, "not a short-form length");
    }

    /// A DER TLV (short or two-byte long form length).
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    /// A CRL (unsigned: parsing checks no signature) listing serial 5 with one entry
    /// extension of this OID (its encoded body), critical or not, and a DER value.
    fn crl_with_entry_extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
        let seq = |parts: &[Vec<u8>]| tlv(0x30, &parts.concat());
        let algorithm = seq(&[
            tlv(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
            ),
            tlv(0x05, &[]),
        ]);
        let issuer = seq(&[tlv(
            0x31,
            &seq(&[tlv(0x06, &[0x55, 0x04, 0x03]), tlv(0x0c, b"Test CA")]),
        )]);
        let time = tlv(0x17, b"260101000000Z");
        let mut extension = vec![tlv(0x06, oid)];
        if critical {
            extension.push(tlv(0x01, &[0xff]));
        }
        extension.push(tlv(0x04, value));
        let entry = seq(&[tlv(0x02, &[5]), time.clone(), seq(&[seq(&extension)])]);
        let tbs = seq(&[
            tlv(0x02, &[1]),
            algorithm.clone(),
            issuer,
            time,
            seq(&[entry]),
        ]);
        seq(&[tbs, algorithm, tlv(0x03, &[0, 1, 2, 3])])
    }

    #[test]
    fn crl_entries_naming_another_issuer_or_with_unknown_critical_extensions_are_refused() {
        let parse = |der: Vec<u8>| Crl::parse("entry.crl".into(), der);
        let generalized = tlv(0x18, b"20260101000000Z");
        // Known entry extensions are read past, even marked critical.
        for oid in [[0x55, 0x1d, 0x18], [0x55, 0x1d, 0x17]] {
            let crl = parse(crl_with_entry_extension(&oid, true, &generalized)).unwrap();
            assert!(crl.revoked().any(|serial| serial == &[5]));
        }
        // The certificate issuer of an indirect CRL: the entry is another CA's certificate.
        let issuer = crl_with_entry_extension(&[0x55, 0x1d, 0x1d], true, &tlv(0x30, &[]));
        let message = parse(issuer).unwrap_err();
        assert!(message.contains("indirect"), "{message}");
        let unknown = crl_with_entry_extension(&[0x2a, 0x03], true, &tlv(0x05, &[]));
        let message = parse(unknown).unwrap_err();
        assert!(message.contains("1.2.3"), "{message}");
        assert!(
            parse(crl_with_entry_extension(
                &[0x2a, 0x03],
                false,
                &tlv(0x05, &[])
            ))
            .is_ok(),
            "an unknown entry extension that is not critical is read past"
        );
    }

    #[test]
    fn a_scope_covers_by_kind_of_certificate_and_by_distribution_point() {
        let leaf = |points: &[&str]| CertificateScope {
            is_ca: false,
            distribution_points: points.iter().map(|p| (*p).to_owned()).collect(),
        };
        let ca = CertificateScope {
            is_ca: true,
            distribution_points: vec![],
        };
        let whole = Scope::default();
        assert!(whole.covers(&leaf(&[])) && whole.covers(&ca));
        let users = Scope {
            only_user_certs: true,
            ..Scope::default()
        };
        assert!(users.covers(&leaf(&[])) && !users.covers(&ca));
        let cas = Scope {
            only_ca_certs: true,
            ..Scope::default()
        };
        assert!(!cas.covers(&leaf(&[])) && cas.covers(&ca));
        let partition = Scope {
            distribution_points: vec!["URI:http://crl/1.crl".into()],
            ..Scope::default()
        };
        assert!(partition.covers(&leaf(&["URI:http://crl/0.crl", "URI:http://crl/1.crl"])));
        assert!(!partition.covers(&leaf(&["URI:http://crl/2.crl"])));
        assert!(
            !partition.covers(&leaf(&[])),
            "no CDP: not in any partition"
        );
    }
}
