//! vm.max_map_count, the most VMAs a process may have: read when the
//! daemon starts and again when a worker needs it and the value is over a
//! minute old (the setting rarely changes; never read on the event loop).

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::io_pool::lock;

pub const MAX_MAP_COUNT: &str = "/proc/sys/vm/max_map_count";
const REFRESH: Duration = Duration::from_secs(60);

pub(super) struct MaxMapCount(Mutex<(Instant, Option<u64>)>);

fn read() -> Option<u64> {
    std::fs::read_to_string(MAX_MAP_COUNT)
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl MaxMapCount {
    pub(super) fn new() -> Self {
        Self(Mutex::new((Instant::now(), read())))
    }

    /// The setting, re-read when the last read is over [`REFRESH`] old.
    pub(super) fn get(&self) -> Option<u64> {
        let mut cached = lock(&self.0);
        if cached.0.elapsed() > REFRESH {
            *cached = (Instant::now(), read());
        }
        cached.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernel_setting() {
        let want: u64 = std::fs::read_to_string(MAX_MAP_COUNT)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(MaxMapCount::new().get(), Some(want));
    }
}
