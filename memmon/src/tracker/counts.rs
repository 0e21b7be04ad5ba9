//! Memory syscalls seen per process: calls and failures of each.

use crate::events::Syscall;

/// Calls of one syscall, and how many of them failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallCount {
    pub calls: u64,
    pub failures: u64,
}

impl CallCount {
    pub fn add(&mut self, other: CallCount) {
        self.calls += other.calls;
        self.failures += other.failures;
    }
}

/// A [`CallCount`] per [`Syscall::ALL`] entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyscallCounts([CallCount; Syscall::ALL.len()]);

impl SyscallCounts {
    pub fn record(&mut self, syscall: Syscall, failed: bool) {
        // The discriminant indexes `Syscall::ALL` (see `Syscall`).
        self.0[syscall as usize].add(CallCount {
            calls: 1,
            failures: u64::from(failed),
        });
    }

    pub fn add(&mut self, other: &SyscallCounts) {
        for (total, more) in self.0.iter_mut().zip(other.0) {
            total.add(more);
        }
    }

    /// Whether any call was counted.
    pub fn any(&self) -> bool {
        self.0.iter().any(|c| c.calls > 0)
    }

    /// The syscalls called at least once, with their counts.
    pub fn called(&self) -> impl Iterator<Item = (Syscall, CallCount)> + '_ {
        Syscall::ALL
            .iter()
            .zip(self.0)
            .filter(|(_, c)| c.calls > 0)
            .map(|(s, c)| (*s, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_adds_by_syscall() {
        let mut a = SyscallCounts::default();
        assert!(!a.any());
        a.record(Syscall::Mmap, false);
        a.record(Syscall::Mmap, true);
        let mut b = SyscallCounts::default();
        b.record(Syscall::Brk, false);
        b.record(Syscall::Mmap, false);
        a.add(&b);
        let called: Vec<_> = a.called().collect();
        let mmap = CallCount {
            calls: 3,
            failures: 1,
        };
        let brk = CallCount {
            calls: 1,
            failures: 0,
        };
        assert_eq!(called.len(), 2, "{called:?}");
        assert!(called.contains(&(Syscall::Mmap, mmap)), "{called:?}");
        assert!(called.contains(&(Syscall::Brk, brk)), "{called:?}");
    }
}
