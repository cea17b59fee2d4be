//! How a presented chain is stored: each certificate's DER in hex, space-separated, leaf
//! first (`presented_certificates.chain`), and read back for the tryout.

/// A presented chain as stored: each certificate's DER in hex, space-separated.
pub fn chain_text(chain: &[Vec<u8>]) -> String {
    chain.iter().map(hex::encode).collect::<Vec<_>>().join(" ")
}

/// A stored chain read back; `None` when it is not what [`chain_text`] writes.
pub fn chain_from_text(text: &str) -> Option<Vec<Vec<u8>>> {
    let chain = text
        .split(' ')
        .map(|der| hex::decode(der).ok().filter(|der| !der.is_empty()))
        .collect::<Option<Vec<_>>>()?;
    (!chain.is_empty()).then_some(chain)
}
