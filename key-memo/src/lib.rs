//! RSA private keys, parsed once per process.
//!
//! aws-lc-rs validates a private key as it parses it, which costs about as much as several
//! signatures. The scenario runner and the property suite build a gateway and a simulator per
//! scenario or case over the same keys; each key is parsed once: parsed pairs are kept by their
//! DER, the few most recently used only.
//!
//! A primitive, like `aws-lc-rs` itself: the gateway's adapters and the mock channels both use
//! it, and it knows nothing of either protocol (architecture invariant: the simulator shares no
//! wire types or canonicalisation code with the gateway).

use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::signature::RsaKeyPair;

/// How a private key's DER is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `PRIVATE KEY` (PKCS#8).
    Pkcs8,
    /// `RSA PRIVATE KEY` (PKCS#1).
    Pkcs1,
}

/// How many parsed keys are kept.
const KEPT: usize = 8;

type Parsed = (Encoding, Vec<u8>, Arc<RsaKeyPair>);

/// Parsed key pairs by their DER, most recently used last.
struct Memo(Mutex<Vec<Parsed>>);

static PARSED: Memo = Memo(Mutex::new(Vec::new()));

/// The key pair `der` encodes; parsed (and validated) on its first use in this process.
pub fn parse(encoding: Encoding, der: &[u8]) -> Result<Arc<RsaKeyPair>, KeyRejected> {
    PARSED.parse(encoding, der)
}

impl Memo {
    fn parse(&self, encoding: Encoding, der: &[u8]) -> Result<Arc<RsaKeyPair>, KeyRejected> {
        {
            let mut parsed = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(position) = parsed
                .iter()
                .position(|(kind, bytes, _)| *kind == encoding && bytes == der)
            {
                let entry = parsed.remove(position);
                let pair = Arc::clone(&entry.2);
                parsed.push(entry);
                return Ok(pair);
            }
        }
        let pair = Arc::new(match encoding {
            Encoding::Pkcs8 => RsaKeyPair::from_pkcs8(der)?,
            Encoding::Pkcs1 => RsaKeyPair::from_der(der)?,
        });
        let mut parsed = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        parsed.push((encoding, der.to_vec(), Arc::clone(&pair)));
        if parsed.len() > KEPT {
            parsed.remove(0);
        }
        Ok(pair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_parsed_once_and_garbage_is_refused() {
        let pem = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/vectors/alipay/keys/app_private_pkcs8.pem"
        ));
        let (_, der) = rsa::pkcs8::der::pem::decode_vec(pem.as_bytes()).unwrap();
        let memo = Memo(Mutex::new(Vec::new()));
        let first = memo.parse(Encoding::Pkcs8, &der).unwrap();
        let second = memo.parse(Encoding::Pkcs8, &der).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "parsed once");
        assert!(
            memo.parse(Encoding::Pkcs1, &der).is_err(),
            "PKCS#8 bytes are not PKCS#1"
        );
        assert!(memo.parse(Encoding::Pkcs8, b"not a key").is_err());
        assert_eq!(memo.0.lock().unwrap().len(), 1, "only valid keys are kept");
    }
}
