//! Random secrets and their digests: opaque tokens handed to clients are stored only as SHA-256
//! digests, so a leaked table or cache cannot be replayed, and compared in constant time.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// `N` bytes from the operating system's CSPRNG (through rand's thread-local ChaCha generator,
/// seeded and periodically reseeded from the OS).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0_u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A fresh opaque token: 256 random bits, URL-safe base64.
pub fn new_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A 6-digit code, uniform over 000000–999999.
pub fn new_code() -> String {
    use rand::Rng as _;
    format!("{:06}", rand::rng().random_range(0..1_000_000_u32))
}

/// The SHA-256 digest of `data`, in lower-case hex.
pub fn digest_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The SHA-256 digest of `parts` joined, raw.
pub fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Whether two byte strings are equal, in time that does not depend on where they differ.
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_six_digits() {
        for _ in 0..1_000 {
            let code = new_code();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn tokens_are_distinct_and_url_safe() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn digests_are_hex_sha256() {
        assert_eq!(
            digest_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(equal(b"same", b"same"));
        assert!(!equal(b"same", b"diff"));
    }
}
