//! What memmon traces, in one table: the memory syscalls, the tracepoints
//! that carry them, and which kernel program serves which tracepoint. The
//! loader attaches from [`PROGRAMS`], userspace names syscalls from
//! [`MEMORY_SYSCALLS`], and the overhead bench attaches bpftrace to the
//! same tracepoints.

use core::fmt;

/// A tracepoint as `category/name`, e.g. `syscalls/sys_exit_mmap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TracepointId {
    pub category: &'static str,
    pub name: &'static str,
}

impl TracepointId {
    pub const fn syscall(name: &'static str) -> Self {
        Self {
            category: "syscalls",
            name,
        }
    }

    pub const fn mmap_lock(name: &'static str) -> Self {
        Self {
            category: "mmap_lock",
            name,
        }
    }

    pub const fn sched(name: &'static str) -> Self {
        Self {
            category: "sched",
            name,
        }
    }
}

impl fmt::Display for TracepointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.category, self.name)
    }
}

/// A traced syscall: its name and its exit tracepoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracedSyscall {
    pub name: &'static str,
    pub exit: TracepointId,
}

/// One table entry per syscall name; the tracepoint names are spelled from it.
macro_rules! traced {
    ($($name:literal),* $(,)?) => {
        [$(TracedSyscall {
            name: $name,
            exit: TracepointId::syscall(concat!("sys_exit_", $name)),
        }),*]
    };
}

/// The memory syscalls, traced at their exit only by `sys_exit_memory`
/// (arguments from the saved registers). `memmon::events::Syscall`
/// follows this order.
pub const MEMORY_SYSCALLS: [TracedSyscall; 11] = traced![
    "mmap",
    "munmap",
    "brk",
    "mprotect",
    "pkey_mprotect",
    "mremap",
    "shmat",
    "shmdt",
    "io_setup",
    "io_destroy",
    "remap_file_pages",
];

/// prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, ...) names anonymous memory;
/// traced at its exit only, like the memory syscalls.
pub const PRCTL: TracedSyscall = traced!["prctl"][0];

/// Fires on every mmap lock acquisition: the write side is the safety net
/// for layout changes no syscall tracepoint shows (compat syscalls,
/// `int 0x80`, syscalls memmon does not model).
pub const MMAP_LOCK_ACQUIRE_RETURNED: TracepointId =
    TracepointId::mmap_lock("mmap_lock_acquire_returned");

pub const SCHED_PROCESS_EXEC: TracepointId = TracepointId::sched("sched_process_exec");
pub const SCHED_PROCESS_FORK: TracepointId = TracepointId::sched("sched_process_fork");
pub const SCHED_PROCESS_EXIT: TracepointId = TracepointId::sched("sched_process_exit");

/// Which tracepoints of a group of syscalls a program serves.
#[derive(Clone, Copy, Debug)]
pub enum Serves {
    Exit(&'static [TracedSyscall]),
    Tracepoint(TracepointId),
    /// A BTF-typed tracepoint (`tp_btf`), by event name: its arguments
    /// are kernel pointers (the fork program reads the child's task).
    BtfTracepoint(&'static str),
}

/// A kernel program (named as its `#[tracepoint]` fn in memmon-ebpf) and
/// the tracepoints it is attached to.
#[derive(Clone, Copy, Debug)]
pub struct Program {
    pub name: &'static str,
    pub serves: &'static [Serves],
}

impl Program {
    pub fn tracepoints(&self) -> impl Iterator<Item = TracepointId> + '_ {
        self.serves.iter().flat_map(|s| {
            let (syscalls, single) = match *s {
                Serves::Exit(list) => (list, None),
                Serves::Tracepoint(tp) => (&[][..], Some(tp)),
                Serves::BtfTracepoint(_) => (&[][..], None),
            };
            syscalls.iter().map(|s| s.exit).chain(single)
        })
    }
}

/// The attach plan: every program and every tracepoint memmon attaches.
/// No `sys_enter_*` is attached: each per-syscall tracepoint adds a floor
/// cost to every other syscall, and the exit programs need no entry.
pub const PROGRAMS: [Program; 6] = [
    Program {
        name: "sys_exit_memory",
        serves: &[Serves::Exit(&MEMORY_SYSCALLS)],
    },
    Program {
        name: "sys_exit_prctl",
        serves: &[Serves::Exit(&[PRCTL])],
    },
    Program {
        name: "sched_process_exec",
        serves: &[Serves::Tracepoint(SCHED_PROCESS_EXEC)],
    },
    Program {
        name: "sched_process_fork",
        serves: &[Serves::BtfTracepoint(SCHED_PROCESS_FORK.name)],
    },
    Program {
        name: "sched_process_exit",
        serves: &[Serves::Tracepoint(SCHED_PROCESS_EXIT)],
    },
    Program {
        name: "mmap_lock_write",
        serves: &[Serves::Tracepoint(MMAP_LOCK_ACQUIRE_RETURNED)],
    },
];

/// Every classic tracepoint of [`PROGRAMS`], in attach order.
pub fn all_tracepoints() -> impl Iterator<Item = TracepointId> {
    PROGRAMS.iter().flat_map(|p| p.tracepoints())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{collections::BTreeSet, string::ToString, vec::Vec};

    use super::*;

    #[test]
    fn the_plan_spells_every_tracepoint_once() {
        let all: Vec<TracepointId> = all_tracepoints().collect();
        // Exit of 11 memory syscalls and prctl, two classic sched events
        // (fork is on tp_btf), the mmap lock.
        assert_eq!(all.len(), 11 + 1 + 2 + 1);
        let unique: BTreeSet<_> = all.iter().map(ToString::to_string).collect();
        assert_eq!(unique.len(), all.len());
        assert!(unique.contains("syscalls/sys_exit_pkey_mprotect"));
        assert!(unique.contains("syscalls/sys_exit_shmdt"));
        assert!(unique.iter().all(|tp| !tp.contains("sys_enter_")));
        assert!(!unique.contains("syscalls/sys_exit_clone"));
        assert!(unique.contains("syscalls/sys_exit_prctl"));
        assert!(unique.contains("sched/sched_process_exit"));
        assert!(unique.contains("syscalls/sys_exit_io_setup"));
        assert!(unique.contains("mmap_lock/mmap_lock_acquire_returned"));
        let exits: Vec<_> = PROGRAMS[0].tracepoints().collect();
        assert_eq!(exits.len(), MEMORY_SYSCALLS.len());
        assert!(exits.iter().all(|tp| tp.name.starts_with("sys_exit_")));
    }
}
