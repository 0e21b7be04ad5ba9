//! A task's comm, held as the kernel's bytes: every event carries one, so
//! decoding copies one 16-byte word, and text is made only when shown.

use std::{borrow::Cow, fmt};

use memmon_common::COMM_LEN;
use serde::Serialize;

/// The text of a kernel comm: the bytes before its first NUL (all 16 when
/// there is none), stored with the rest zeroed so that equal texts compare
/// equal. Shown lossily as UTF-8 ([`Comm::to_str`]).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Comm([u8; COMM_LEN]);

impl Comm {
    /// The bytes before the first NUL of a kernel comm (at most 16).
    pub fn from_kernel(raw: &[u8]) -> Self {
        match raw.first_chunk::<COMM_LEN>() {
            Some(word) => Self::from_word(word),
            None => {
                let mut word = [0; COMM_LEN];
                word[..raw.len()].copy_from_slice(raw);
                Self::from_word(&word)
            }
        }
    }

    /// A whole kernel comm as one 16-byte word, its NUL found without a
    /// loop (this runs once per event).
    fn from_word(word: &[u8; COMM_LEN]) -> Self {
        const ONES: u128 = u128::from_le_bytes([0x01; COMM_LEN]);
        const HIGH: u128 = u128::from_le_bytes([0x80; COMM_LEN]);
        let x = u128::from_le_bytes(*word);
        // The lowest flagged byte is the first NUL: a borrow only runs
        // upwards from a zero byte, so bytes below it are never flagged.
        let nuls = x.wrapping_sub(ONES) & !x & HIGH;
        let end = nuls.trailing_zeros() / 8; // 16: no NUL
        let kept = u128::MAX
            .checked_shr(8 * (COMM_LEN as u32 - end))
            .unwrap_or(0);
        Self((x & kept).to_le_bytes())
    }

    /// The comm's bytes, without the NUL padding.
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        &self.0[..end]
    }

    /// The comm as text, lossily: borrowed for UTF-8 (nearly every comm).
    pub fn to_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

impl From<&str> for Comm {
    /// Longer text is cut at the last char boundary that fits in 16 bytes.
    fn from(text: &str) -> Self {
        let mut len = text.len().min(COMM_LEN);
        while !text.is_char_boundary(len) {
            len -= 1;
        }
        let mut word = [0; COMM_LEN];
        word[..len].copy_from_slice(&text.as_bytes()[..len]);
        Self::from_word(&word)
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_str())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_str(), f)
    }
}

impl Serialize for Comm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_str())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::Just;

    use super::*;

    #[test]
    fn kernel_comms_stop_at_the_nul_and_decode_lossily() {
        assert_eq!(Comm::from_kernel(b"bash\0\0\0garbage"), Comm::from("bash"));
        assert_eq!(Comm::from_kernel(b"bash\0\0\0garbage").to_str(), "bash");
        assert_eq!(
            Comm::from_kernel(b"fifteen-chars-x\0").to_str(),
            "fifteen-chars-x"
        );
        let invalid = Comm::from_kernel(&[0xff; 16]);
        assert_eq!(invalid.to_str(), "\u{fffd}".repeat(16));
        assert_eq!(Comm::from_kernel(b"ab").to_str(), "ab");
    }

    proptest::proptest! {
        /// The one-word path agrees with decoding the bytes up to the NUL.
        #[test]
        fn kernel_comms_match_a_plain_decode(
            raw in proptest::array::uniform16(proptest::prop_oneof![
                Just(0u8), 1u8..0x80, 0x80u8..=0xff
            ])
        ) {
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            let got = Comm::from_kernel(&raw);
            proptest::prop_assert_eq!(got.as_bytes(), &raw[..end]);
            proptest::prop_assert_eq!(got.to_str(), String::from_utf8_lossy(&raw[..end]));
            if let Ok(text) = std::str::from_utf8(&raw[..end]) {
                proptest::prop_assert_eq!(got, Comm::from(text));
            }
        }
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary() {
        let text = "é".repeat(40);
        let comm = Comm::from(text.as_str());
        assert_eq!(comm.to_str(), "é".repeat(8));
    }
}
