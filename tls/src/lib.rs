//! TLS pieces the applications share, each defined once:
//!
//! - [`pkcs12_identity`]: a certificate chain and its key from a PKCS#12 file's bytes and its
//!   password (dispatch-api's server identity, route-worker's client identity).
//! - [`https_client`] (feature `client`): the awc client route-worker and dispatchctl call
//!   dispatch-api with.

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The chain (leaf first) and the private key of a PKCS#12 file, opened with `password` under
/// p12-keystore's strict policy. The error says what is wrong, for the caller to name the file.
pub fn pkcs12_identity(
    bytes: &[u8],
    password: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let store = p12_keystore::KeyStore::from_pkcs12(
        bytes,
        password,
        p12_keystore::Pkcs12ImportPolicy::Strict,
    )
    .map_err(|e| format!("cannot open it with its password: {e}"))?;
    let (_, entry) = store
        .private_key_chain()
        .ok_or("it holds no private key with a certificate chain")?;
    let chain: Vec<CertificateDer<'static>> = entry
        .certs()
        .iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect();
    if chain.is_empty() {
        return Err("it holds no certificate".into());
    }
    let key = PrivateKeyDer::try_from(entry.key().as_der().to_vec())?;
    Ok((chain, key))
}

/// An HTTPS client over `tls` (which verifies the server: no caller may build one that does
/// not), with `timeout` for the connection, the handshake and each request, and idle
/// connections kept for `keep_alive` (`None`: awc's default).
///
/// It never follows a redirect: awc would carry the API key, the client certificate's
/// authority and the body to wherever a `Location` points, another host or plain `http://`
/// included. dispatch-api never redirects; a 3xx is an error for the caller.
#[cfg(feature = "client")]
pub fn https_client(
    tls: rustls::ClientConfig,
    timeout: std::time::Duration,
    keep_alive: Option<std::time::Duration>,
) -> awc::Client {
    let mut connector = awc::Connector::new()
        .rustls_0_23(std::sync::Arc::new(tls))
        .timeout(timeout)
        .handshake_timeout(timeout);
    if let Some(keep_alive) = keep_alive {
        connector = connector.conn_keep_alive(keep_alive);
    }
    awc::Client::builder()
        .disable_redirects()
        .connector(connector)
        .timeout(timeout)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_pkcs12_or_has_the_wrong_password_is_refused_saying_so() {
        let error = pkcs12_identity(b"not a PKCS#12 file", "secret").unwrap_err();
        assert!(
            error.starts_with("cannot open it with its password"),
            "{error}"
        );
    }
}
