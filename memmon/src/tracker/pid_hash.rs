//! A map keyed by pid with a cheap hash: it is looked up once per event,
//! and SipHash cost more than the rest of the lookup. Pids are small
//! integers the kernel hands out, and the table holds only live
//! processes, so flooding one bucket is not a worry here.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

pub type PidMap<V> = HashMap<u32, V, BuildHasherDefault<PidHasher>>;

/// Fibonacci hashing of one integer: a multiply spreads consecutive pids
/// over the high bits, which hashbrown uses for its control bytes.
#[derive(Default)]
pub struct PidHasher(u64);

impl Hasher for PidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only integers are hashed here; this keeps any other key correct.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_pids_spread_over_the_top_bits() {
        let top = |pid: u32| {
            let mut h = PidHasher::default();
            h.write_u32(pid);
            h.finish() >> 57
        };
        let distinct: std::collections::HashSet<u64> = (1000..1128).map(top).collect();
        assert!(distinct.len() > 64, "only {} of 128", distinct.len());
        let mut map = PidMap::default();
        map.insert(7u32, "a");
        assert_eq!(map.get(&7), Some(&"a"));
    }
}
