//! Entropy: the only source of randomness (ids, nonces, tokens, fault dice). Seeded in
//! simulation so that a seed fixes the whole history; the OS generator in the sandbox.

use std::fmt;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use rand_chacha::ChaCha8Rng;
#[allow(
    clippy::disallowed_types,
    reason = "this module is the entropy seam; OsEntropy wraps OsRng"
)]
use rand_core::OsRng;
use rand_core::{RngCore, SeedableRng};

/// A source of random bytes shared across components (`Arc<dyn Entropy>`).
pub trait Entropy: Send + Sync + fmt::Debug {
    /// The next 64 random bits.
    fn next_u64(&self) -> u64;
    /// Fills `dest` with random bytes.
    fn fill_bytes(&self, dest: &mut [u8]);
}

/// A reproducible generator: the same seed (and stream) yields the same sequence.
pub struct SeededEntropy {
    seed: u64,
    stream: u64,
    rng: Mutex<ChaCha8Rng>,
}

impl SeededEntropy {
    /// The generator for `seed` (stream 0).
    pub fn new(seed: u64) -> Self {
        Self::with_stream(seed, 0)
    }

    /// An independent sequence for the same seed. Giving each component its own stream keeps
    /// one component's extra draw from shifting every other component's values.
    pub fn with_stream(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Self {
            seed,
            stream,
            rng: Mutex::new(rng),
        }
    }

    /// The seed this generator was built from (print it so a run can be repeated).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn with_rng<T>(&self, draw: impl FnOnce(&mut ChaCha8Rng) -> T) -> T {
        // A generator's state is valid after any interrupted draw, so poisoning is harmless.
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        draw(&mut rng)
    }
}

impl fmt::Debug for SeededEntropy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeededEntropy")
            .field("seed", &self.seed)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Entropy for SeededEntropy {
    fn next_u64(&self) -> u64 {
        self.with_rng(RngCore::next_u64)
    }

    fn fill_bytes(&self, dest: &mut [u8]) {
        self.with_rng(|rng| rng.fill_bytes(dest));
    }
}

/// The operating system's generator (getrandom), for the sandbox and real keys.
///
/// If the OS cannot provide randomness the process aborts the request with a panic inside
/// `rand_core`: there is no safe value to continue with, so this fails closed.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "this is the seam: the one place OS randomness enters the program"
)]
impl Entropy for OsEntropy {
    fn next_u64(&self) -> u64 {
        OsRng.next_u64()
    }

    fn fill_bytes(&self, dest: &mut [u8]) {
        OsRng.fill_bytes(dest);
    }
}

impl<T: Entropy + ?Sized> Entropy for std::sync::Arc<T> {
    fn next_u64(&self) -> u64 {
        (**self).next_u64()
    }

    fn fill_bytes(&self, dest: &mut [u8]) {
        (**self).fill_bytes(dest);
    }
}

const TOKEN_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Derived values built on any [`Entropy`], including `dyn Entropy`.
pub trait EntropyExt: Entropy {
    /// A uniformly distributed value in `0..bound` (0 when `bound` is 0), without modulo bias.
    fn uniform_below(&self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Reject the top partial block of the u64 range so every residue is equally likely.
        let zone = u64::MAX - (u64::MAX - bound + 1) % bound;
        loop {
            let value = self.next_u64();
            if value <= zone {
                return value % bound;
            }
        }
    }

    /// `len` characters from `[0-9a-z]`, uniformly distributed (nonces, tokens, ids).
    fn token(&self, len: usize) -> String {
        let mut token = String::with_capacity(len);
        while token.len() < len {
            for byte in self.next_u64().to_le_bytes() {
                // 252 = 7 × 36: bytes above it would favour the first letters.
                if byte < 252 && token.len() < len {
                    let index = usize::from(byte % 36);
                    if let Some(&symbol) = TOKEN_ALPHABET.get(index) {
                        token.push(char::from(symbol));
                    }
                }
            }
        }
        token
    }

    /// `bytes` random bytes as lowercase hex (`2 × bytes` characters).
    fn hex(&self, bytes: usize) -> String {
        let mut raw = vec![0_u8; bytes];
        self.fill_bytes(&mut raw);
        let mut hex = String::with_capacity(bytes * 2);
        for byte in raw {
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }

    /// A random (version 4, RFC 4122 variant) UUID in its lowercase hyphenated form.
    fn uuid_v4_string(&self) -> String {
        let mut bytes = [0_u8; 16];
        self.fill_bytes(&mut bytes);
        let [b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15] = bytes;
        let version = (b6 & 0x0f) | 0x40;
        let variant = (b8 & 0x3f) | 0x80;
        format!(
            "{b0:02x}{b1:02x}{b2:02x}{b3:02x}-{b4:02x}{b5:02x}-{version:02x}{b7:02x}-\
             {variant:02x}{b9:02x}-{b10:02x}{b11:02x}{b12:02x}{b13:02x}{b14:02x}{b15:02x}"
        )
    }
}

impl<T: Entropy + ?Sized> EntropyExt for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn draws(entropy: &dyn Entropy) -> Vec<u64> {
        (0..8).map(|_| entropy.next_u64()).collect()
    }

    #[test]
    fn same_seed_same_sequence_different_seeds_differ() {
        let first = SeededEntropy::new(42);
        let again = SeededEntropy::new(42);
        assert_eq!(draws(&first), draws(&again));
        assert_eq!(first.token(20), again.token(20));
        assert_eq!(first.uuid_v4_string(), again.uuid_v4_string());
        assert_ne!(
            draws(&SeededEntropy::new(42)),
            draws(&SeededEntropy::new(43))
        );
        assert_ne!(
            draws(&SeededEntropy::with_stream(42, 1)),
            draws(&SeededEntropy::new(42)),
            "streams are independent"
        );
        assert_eq!(first.seed(), 42);
        assert!(format!("{first:?}").contains("seed: 42"));
    }

    #[test]
    fn extension_methods_work_on_dyn_entropy() {
        let entropy: Arc<dyn Entropy> = Arc::new(SeededEntropy::new(7));
        let token = entropy.token(32);
        assert_eq!(token.len(), 32);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
        let hex = entropy.hex(16);
        assert_eq!(hex.len(), 32);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(entropy.token(0), "");
        assert_eq!(entropy.hex(0), "");
        for bound in [1, 2, 3, 10, u64::MAX] {
            assert!(entropy.uniform_below(bound) < bound);
        }
        assert_eq!(entropy.uniform_below(0), 0);
    }

    #[test]
    fn uuid_has_the_version_4_format() {
        let entropy = SeededEntropy::new(1);
        for _ in 0..100 {
            let uuid = entropy.uuid_v4_string();
            let groups: Vec<&str> = uuid.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(uuid
                .bytes()
                .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            assert!(groups[2].starts_with('4'));
            assert!(matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        }
    }

    #[test]
    fn token_uses_the_whole_alphabet() {
        let token = SeededEntropy::new(3).token(5_000);
        for symbol in TOKEN_ALPHABET.iter() {
            assert!(token.as_bytes().contains(symbol), "{}", char::from(*symbol));
        }
    }

    #[test]
    fn os_entropy_produces_distinct_values() {
        let entropy = OsEntropy;
        assert_ne!(entropy.next_u64(), entropy.next_u64());
        assert_ne!(entropy.uuid_v4_string(), entropy.uuid_v4_string());
    }
}
