//! Names as a certificate encodes them: distinguished names compared RDN by RDN (and read from
//! text with RFC 4514 escapes), and SPIFFE IDs.

use std::fmt;

use serde::{Serialize, Serializer};

/// An X.500 distinguished name, compared RDN by RDN as its DER encoding has it: the same
/// attributes in the same order with the same values. Never compared as printed text, which
/// is ambiguous: a one-attribute name `CN=a\, O=b` printed without escaping looks exactly like
/// the two-attribute `CN=a, O=b`.
///
/// Written names (bindings, copied from `openssl x509 -noout -issuer` or from `/api/whoami`)
/// are read in the same order, most significant first, with RFC 4514 escapes: `C=DE, O=Acme,
/// CN=Acme CA`. Attribute types are case-insensitive (`cn`, `commonName`, `2.5.4.3`); values are
/// exact. Inside a multi-valued RDN (`OU=a+CN=b`), order does not matter, as in DER (a SET).
#[derive(Clone)]
pub struct DistinguishedName {
    display: String,
    pub(super) rdns: Vec<Vec<Attribute>>,
}

/// One attribute of a name: its type as a dotted OID and its value as text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Attribute {
    pub(super) oid: String,
    pub(super) value: String,
}

impl PartialEq for DistinguishedName {
    fn eq(&self, other: &Self) -> bool {
        self.rdns == other.rdns
    }
}

impl Eq for DistinguishedName {}

impl std::hash::Hash for DistinguishedName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.rdns.hash(state);
    }
}

/// Short names of the attribute types people write, and their OIDs.
const ATTRIBUTE_NAMES: &[(&str, &str)] = &[
    ("CN", "2.5.4.3"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("C", "2.5.4.6"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("STREET", "2.5.4.9"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("EMAILADDRESS", "1.2.840.113549.1.9.1"),
];

fn attribute_oid(key: &str) -> Result<String, String> {
    let upper = key.to_ascii_uppercase();
    let alias = match upper.as_str() {
        "COMMONNAME" => "CN",
        "ORGANIZATIONNAME" => "O",
        "ORGANIZATIONALUNITNAME" => "OU",
        "COUNTRYNAME" => "C",
        "LOCALITYNAME" => "L",
        "STATEORPROVINCENAME" | "S" => "ST",
        "DOMAINCOMPONENT" => "DC",
        "USERID" => "UID",
        "E" => "EMAILADDRESS",
        other => other,
    };
    if let Some((_, oid)) = ATTRIBUTE_NAMES.iter().find(|(name, _)| *name == alias) {
        return Ok((*oid).to_owned());
    }
    let dotted = key.contains('.')
        && key
            .split('.')
            .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()));
    if dotted {
        Ok(key.to_owned())
    } else {
        Err(format!(
            "`{key}` is not an attribute type this service knows (CN, O, OU, C, L, ST, DC, ... or a dotted OID)"
        ))
    }
}

fn attribute_label(oid: &str) -> &str {
    ATTRIBUTE_NAMES
        .iter()
        .find(|(_, known)| *known == oid)
        .map_or(oid, |(name, _)| match *name {
            "SERIALNUMBER" => "serialNumber",
            "EMAILADDRESS" => "emailAddress",
            other => other,
        })
}

impl DistinguishedName {
    /// Reads a written name (see the type's documentation for the form).
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        // `openssl x509 -nameopt compat` prints `/C=DE/O=Acme/CN=Acme CA`.
        let (body, separator) = match trimmed.strip_prefix('/') {
            Some(rest) => (rest, '/'),
            None => (trimmed, ','),
        };
        let mut rdns = Vec::new();
        for rdn in split_unescaped(body, separator) {
            if rdn.trim().is_empty() {
                return Err(format!("`{text}` has an empty part"));
            }
            let mut attributes = Vec::new();
            for part in split_unescaped(rdn, '+') {
                let (key, value) = part.split_once('=').ok_or_else(|| {
                    format!("`{}` in `{text}` is not of the form KEY=value", part.trim())
                })?;
                attributes.push(Attribute {
                    oid: attribute_oid(key.trim())?,
                    value: unescape(value.trim())
                        .map_err(|e| format!("`{}` in `{text}`: {e}", part.trim()))?,
                });
            }
            attributes.sort();
            rdns.push(attributes);
        }
        if rdns.is_empty() {
            return Err(format!("`{text}` names no attributes"));
        }
        Ok(Self {
            display: trimmed.to_owned(),
            rdns,
        })
    }

    /// The name of a certificate, from its DER structure. Values that are not strings are kept
    /// as `#` and the hex of their encoding (RFC 4514), so they compare exactly too.
    pub fn from_x509(name: &x509_parser::x509::X509Name<'_>) -> Self {
        let rdns: Vec<Vec<Attribute>> = name
            .iter_rdn()
            .map(|rdn| {
                let mut attributes: Vec<Attribute> = rdn
                    .iter()
                    .map(|attribute| Attribute {
                        oid: attribute.attr_type().to_id_string(),
                        value: attribute.as_str().map_or_else(
                            |_| format!("#{}", hex::encode(attribute.attr_value().as_bytes())),
                            str::to_owned,
                        ),
                    })
                    .collect();
                attributes.sort();
                attributes
            })
            .collect();
        let display = rdns
            .iter()
            .map(|rdn| {
                rdn.iter()
                    .map(|a| format!("{}={}", attribute_label(&a.oid), escape(&a.value)))
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect::<Vec<_>>()
            .join(", ");
        Self { display, rdns }
    }

    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// Every value of an attribute type (such as all CNs), in order.
    pub(super) fn values_of<'a>(&'a self, oid: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.rdns
            .iter()
            .flatten()
            .filter(move |a| a.oid == oid)
            .map(|a| a.value.as_str())
    }
}

/// Splits on `separator` unless escaped with a backslash (RFC 4514).
pub(super) fn split_unescaped(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            parts.push(&text[start..index]);
            start = index + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Undoes RFC 4514 escapes: `\,` and the like, and `\2C` hex pairs.
pub(super) fn unescape(value: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buffer = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            continue;
        }
        match chars.next() {
            Some(h)
                if h.is_ascii_hexdigit() && chars.peek().is_some_and(char::is_ascii_hexdigit) =>
            {
                let l = chars.next().unwrap_or('0');
                let pair = format!("{h}{l}");
                bytes.push(u8::from_str_radix(&pair, 16).map_err(|e| e.to_string())?);
            }
            Some(other) => {
                let mut buffer = [0u8; 4];
                bytes.extend_from_slice(other.encode_utf8(&mut buffer).as_bytes());
            }
            None => return Err("a trailing backslash escapes nothing".into()),
        }
    }
    String::from_utf8(bytes).map_err(|_| "the escaped bytes are not UTF-8".into())
}

/// RFC 4514 escaping, so that a value holding `, O=` prints as one value.
pub(super) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (index, c) in value.chars().enumerate() {
        let leading = index == 0 && matches!(c, ' ' | '#');
        let trailing = index == last && c == ' ';
        if leading || trailing || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Debug for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DistinguishedName({})", self.display)
    }
}

impl Serialize for DistinguishedName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.display)
    }
}

/// A SPIFFE ID (`spiffe://trust-domain/path`) as carried in a URI SAN.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct SpiffeId(String);

impl SpiffeId {
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix("spiffe://")
            .ok_or_else(|| format!("`{text}` is not a SPIFFE ID (spiffe://trust-domain/path)"))?;
        let domain = rest.split('/').next().unwrap_or_default();
        if domain.is_empty() || text.len() > 2048 || text.contains(['?', '#']) {
            return Err(format!("`{text}` is not a valid SPIFFE ID"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
