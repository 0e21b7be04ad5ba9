//! A task's comm, held inline: every event carries one, and decoding
//! must not allocate per event.

use std::{fmt, ops::Deref};

use memmon_common::COMM_LEN;
use serde::Serialize;

/// Room for a comm decoded lossily: each of its bytes but the NUL may
/// become a 3-byte U+FFFD.
const CAPACITY: usize = 3 * (COMM_LEN - 1);

/// UTF-8 text of at most [`CAPACITY`] bytes, stored inline (`Copy`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Comm {
    bytes: [u8; CAPACITY],
    len: u8,
}

impl Comm {
    /// The bytes before the first NUL of a kernel comm, lossily as UTF-8.
    pub fn from_kernel(raw: &[u8]) -> Self {
        if let Some(word) = raw.first_chunk::<COMM_LEN>()
            && let Some(ascii) = Self::ascii_word(word)
        {
            return ascii;
        }
        let raw = &raw[..raw.len().min(COMM_LEN)];
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        if raw[..end].is_ascii() {
            // Nearly every comm: copied as is, once per event.
            let mut bytes = [0; CAPACITY];
            bytes[..end].copy_from_slice(&raw[..end]);
            return Self {
                bytes,
                len: end as u8,
            };
        }
        match std::str::from_utf8(&raw[..end]) {
            Ok(text) => Self::from(text),
            // Rare (comm is set by the process): the allocation is fine.
            Err(_) => Self::from(&*String::from_utf8_lossy(&raw[..end])),
        }
    }

    /// A whole kernel comm as one 16-byte word: its NUL found and its
    /// ASCII checked without a loop, and copied as one store (this runs
    /// once per event). None when it is not ASCII.
    fn ascii_word(word: &[u8; COMM_LEN]) -> Option<Self> {
        const ONES: u128 = u128::from_le_bytes([0x01; COMM_LEN]);
        const HIGH: u128 = u128::from_le_bytes([0x80; COMM_LEN]);
        let x = u128::from_le_bytes(*word);
        // The lowest flagged byte is the first NUL: a borrow only runs
        // upwards from a zero byte, so bytes below it are never flagged.
        let nuls = x.wrapping_sub(ONES) & !x & HIGH;
        let end = (nuls.trailing_zeros() / 8) as usize; // 16: no NUL
        let kept = u128::MAX
            .checked_shr(8 * (COMM_LEN - end) as u32)
            .unwrap_or(0);
        let text = x & kept;
        if text & HIGH != 0 {
            return None;
        }
        let mut bytes = [0; CAPACITY];
        bytes[..COMM_LEN].copy_from_slice(&text.to_le_bytes());
        Some(Self {
            bytes,
            len: end as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only whole `str`s are stored, cut at a char boundary.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl From<&str> for Comm {
    /// Longer text is cut at the last char boundary that fits.
    fn from(text: &str) -> Self {
        let mut len = text.len().min(CAPACITY);
        while !text.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; CAPACITY];
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        Self {
            bytes,
            len: len as u8,
        }
    }
}

impl Deref for Comm {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Comm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::Just;

    use super::*;

    #[test]
    fn kernel_comms_stop_at_the_nul_and_decode_lossily() {
        assert_eq!(Comm::from_kernel(b"bash\0\0\0garbage").as_str(), "bash");
        assert_eq!(
            Comm::from_kernel(b"fifteen-chars-x\0").as_str(),
            "fifteen-chars-x"
        );
        let invalid = Comm::from_kernel(&[0xff; 16]);
        assert_eq!(invalid.as_str(), "\u{fffd}".repeat(15));
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
            let plain = String::from_utf8_lossy(&raw[..end]);
            let (got, want) = (Comm::from_kernel(&raw), Comm::from(&*plain));
            proptest::prop_assert_eq!(got.as_str(), want.as_str());
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary() {
        let text = "é".repeat(40);
        let comm = Comm::from(text.as_str());
        assert_eq!(comm.as_str(), "é".repeat(22));
    }
}
