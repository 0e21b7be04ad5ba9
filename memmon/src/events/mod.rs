//! Typed events decoded from the kernel programs' ring-buffer records.

mod comm;
mod decode;
mod flags;
mod format;
#[cfg(test)]
mod tests;

use memmon_common::tracepoints::{MEMORY_SYSCALLS, TracedSyscall};
use serde::Serialize;

pub use comm::Comm;
pub use decode::{DecodeError, decode};
pub use flags::{errno_name, mmap_flags_string, mremap_flags_string, prot_string};

/// The memory syscalls memmon traces, in the order of
/// [`MEMORY_SYSCALLS`]: the discriminant indexes that table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Syscall {
    Mmap,
    Munmap,
    Brk,
    Mprotect,
    PkeyMprotect,
    Mremap,
    Shmat,
    Shmdt,
    IoSetup,
    IoDestroy,
    RemapFilePages,
}

impl Syscall {
    pub const ALL: [Syscall; MEMORY_SYSCALLS.len()] = [
        Syscall::Mmap,
        Syscall::Munmap,
        Syscall::Brk,
        Syscall::Mprotect,
        Syscall::PkeyMprotect,
        Syscall::Mremap,
        Syscall::Shmat,
        Syscall::Shmdt,
        Syscall::IoSetup,
        Syscall::IoDestroy,
        Syscall::RemapFilePages,
    ];

    /// Its entry in the shared table: name and tracepoints.
    pub const fn traced(self) -> &'static TracedSyscall {
        &MEMORY_SYSCALLS[self as usize]
    }

    /// The name used in tracepoints (`sys_exit_<name>`) and in output.
    pub const fn name(self) -> &'static str {
        self.traced().name
    }

    /// This architecture's syscall number.
    pub const fn nr(self) -> u32 {
        (match self {
            Syscall::Mmap => libc::SYS_mmap,
            Syscall::Munmap => libc::SYS_munmap,
            Syscall::Brk => libc::SYS_brk,
            Syscall::Mprotect => libc::SYS_mprotect,
            Syscall::PkeyMprotect => libc::SYS_pkey_mprotect,
            Syscall::Mremap => libc::SYS_mremap,
            Syscall::Shmat => libc::SYS_shmat,
            Syscall::Shmdt => libc::SYS_shmdt,
            Syscall::IoSetup => libc::SYS_io_setup,
            Syscall::IoDestroy => libc::SYS_io_destroy,
            Syscall::RemapFilePages => libc::SYS_remap_file_pages,
        }) as u32
    }

    /// Why the model cannot apply this syscall's effect from its event, for
    /// the syscalls whose success resyncs the process from /proc at once.
    /// The one list of such syscalls.
    pub const fn resync_reason(self) -> Option<&'static str> {
        match self {
            Syscall::IoSetup => Some(
                "the aio ring's size depends on the kernel's rounding of nr_events \
                 and its page size; the event carries only the ring's address",
            ),
            Syscall::IoDestroy => Some(
                "the event names the ring by its address only; its size is the \
                 kernel's, as at io_setup",
            ),
            Syscall::Shmat => Some(
                "the segment's size and identity are the kernel's; the event \
                 carries only its id and address, and looking them up in /proc \
                 would be I/O on the event loop",
            ),
            Syscall::RemapFilePages => Some(
                "the kernel splits the shared mapping and rewrites file offsets \
                 at page granularity; /proc has the resulting regions",
            ),
            _ => None,
        }
    }

    pub fn from_nr(nr: u32) -> Option<Self> {
        // Once per record: an index, not a search. Built from `ALL` and
        // `nr` at compile time (a number past the table fails the build).
        const BY_NR: [Option<Syscall>; 512] = {
            let mut table = [None; 512];
            let mut i = 0;
            while i < Syscall::ALL.len() {
                table[Syscall::ALL[i].nr() as usize] = Some(Syscall::ALL[i]);
                i += 1;
            }
            table
        };
        BY_NR.get(nr as usize).copied().flatten()
    }

    /// Whether a non-negative result is an address (printed in hex).
    pub const fn returns_address(self) -> bool {
        matches!(
            self,
            Syscall::Mmap | Syscall::Brk | Syscall::Mremap | Syscall::Shmat
        )
    }
}

impl Serialize for Syscall {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Who did it and when: common to every event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Meta {
    /// Thread group id.
    pub pid: u32,
    pub tid: u32,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    pub comm: Comm,
    /// For memory syscalls: the user return address into the caller of
    /// the libc wrapper (the word at the user stack pointer at exit);
    /// 0 for other events or when it could not be read.
    #[serde(skip_serializing_if = "is_zero")]
    pub call_site: u64,
    /// For memory syscalls with `stacks = true`: the id of the user stack
    /// in the kernel's stack map (`bpf::StackTable`); None when stacks are
    /// off, for other events, or when the capture failed (counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_id: Option<u32>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// The file behind a file mmap, read by the kernel programs from the fd
/// table at the call itself (never looked up afterwards).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedFile {
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// As /proc/PID/maps shows it (with " (deleted)" for unlinked files);
    /// None when the kernel could not read all of it (deeper than the
    /// walk goes, a name made up by the filesystem): /proc names it then.
    pub path: Option<String>,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventBody {
    /// `file` is set for successful file mmaps (None when the kernel
    /// programs could not read the fd's file).
    Mmap {
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        fd: i64,
        offset: u64,
        ret: i64,
        /// Boxed: anonymous mmaps, the common case, carry none, and every
        /// event is the size of its largest variant.
        file: Option<Box<MappedFile>>,
    },
    Munmap {
        addr: u64,
        len: u64,
        ret: i64,
    },
    /// `addr` is the requested break (0 queries it); `ret` the new break.
    Brk {
        addr: u64,
        ret: i64,
    },
    /// mprotect, or pkey_mprotect when `pkey` is set.
    Mprotect {
        addr: u64,
        len: u64,
        prot: u64,
        pkey: Option<i32>,
        ret: i64,
    },
    Mremap {
        old_addr: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
        ret: i64,
    },
    Shmat {
        shmid: i32,
        addr: u64,
        flags: u64,
        ret: i64,
    },
    Shmdt {
        addr: u64,
        ret: i64,
    },
    /// io_setup(nr_events, ctxp): `ring` is the address the kernel stored
    /// at `ctxp` (the aio ring's start), read at exit.
    IoSetup {
        nr_events: u64,
        ring: u64,
        ret: i64,
    },
    /// io_destroy(ctx): `ring` is the aio context, the ring's address.
    IoDestroy {
        ring: u64,
        ret: i64,
    },
    RemapFilePages {
        start: u64,
        size: u64,
        pgoff: u64,
        flags: u64,
        ret: i64,
    },
    /// prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr, len, name).
    VmaName {
        addr: u64,
        len: u64,
        name: Option<String>,
        ret: i64,
    },
    Exec {
        filename: String,
        old_tid: u32,
    },
    /// `meta` is the parent's.
    Fork {
        child_pid: u32,
        child_tid: u32,
        clone_flags: u64,
    },
    /// One thread exited; `group_dead` when it was the last of its process.
    Exit {
        group_dead: bool,
    },
}

/// The `kind` words of the events that are not memory syscalls.
const VMA_NAME: &str = "vma_name";
const EXEC: &str = "exec";
const FORK: &str = "fork";
const EXIT: &str = "exit";
const OTHER_KINDS: [&str; 4] = [VMA_NAME, EXEC, FORK, EXIT];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub meta: Meta,
    pub body: EventBody,
}

// Every event is moved from the decoder to the tracker and into a
// process's history: its size is paid on each (176 bytes cost ~10% of the
// daemon's CPU per event before comms were kept raw and files boxed).
const _: () = assert!(size_of::<Event>() <= 120);

impl Event {
    /// Every `kind` word ([`Event::kind`]): the memory syscalls' names,
    /// then the other events'. `trace` starts each line with one.
    pub const KINDS: [&'static str; MEMORY_SYSCALLS.len() + OTHER_KINDS.len()] = {
        let mut kinds = [""; MEMORY_SYSCALLS.len() + OTHER_KINDS.len()];
        let mut i = 0;
        while i < kinds.len() {
            kinds[i] = if i < MEMORY_SYSCALLS.len() {
                MEMORY_SYSCALLS[i].name
            } else {
                OTHER_KINDS[i - MEMORY_SYSCALLS.len()]
            };
            i += 1;
        }
        kinds
    };

    /// The `kind` word used in `trace` output and JSON.
    pub fn kind(&self) -> &'static str {
        if let Some(syscall) = self.syscall() {
            return syscall.name();
        }
        match &self.body {
            EventBody::VmaName { .. } => VMA_NAME,
            EventBody::Exec { .. } => EXEC,
            EventBody::Fork { .. } => FORK,
            EventBody::Exit { .. } => EXIT,
            _ => unreachable!("every other body is a memory syscall's"),
        }
    }

    /// The syscall behind a syscall event.
    pub fn syscall(&self) -> Option<Syscall> {
        Some(match &self.body {
            EventBody::Mmap { .. } => Syscall::Mmap,
            EventBody::Munmap { .. } => Syscall::Munmap,
            EventBody::Brk { .. } => Syscall::Brk,
            EventBody::Mprotect { pkey: None, .. } => Syscall::Mprotect,
            EventBody::Mprotect { pkey: Some(_), .. } => Syscall::PkeyMprotect,
            EventBody::Mremap { .. } => Syscall::Mremap,
            EventBody::Shmat { .. } => Syscall::Shmat,
            EventBody::Shmdt { .. } => Syscall::Shmdt,
            EventBody::IoSetup { .. } => Syscall::IoSetup,
            EventBody::IoDestroy { .. } => Syscall::IoDestroy,
            EventBody::RemapFilePages { .. } => Syscall::RemapFilePages,
            _ => return None,
        })
    }

    /// The syscall's result, for syscall events (negative: -errno).
    pub fn result(&self) -> Option<i64> {
        match &self.body {
            EventBody::Mmap { ret, .. }
            | EventBody::Munmap { ret, .. }
            | EventBody::Brk { ret, .. }
            | EventBody::Mprotect { ret, .. }
            | EventBody::Mremap { ret, .. }
            | EventBody::Shmat { ret, .. }
            | EventBody::Shmdt { ret, .. }
            | EventBody::IoSetup { ret, .. }
            | EventBody::IoDestroy { ret, .. }
            | EventBody::RemapFilePages { ret, .. }
            | EventBody::VmaName { ret, .. } => Some(*ret),
            _ => None,
        }
    }

    /// The syscall failed: its event's arguments are not what it did
    /// (see [`Event::partial_effect`] for what it may still have done).
    pub fn failed(&self) -> bool {
        self.result().is_some_and(|r| r < 0)
    }

    /// Why this failed call may still have changed the layout, which the
    /// model then cannot know: the process is resynced from /proc. The one
    /// list of such failures. EINVAL is checked before anything changes.
    pub fn partial_effect(&self) -> Option<&'static str> {
        const MAP_FIXED: u64 = libc::MAP_FIXED as u64;
        const MAP_FIXED_NOREPLACE: u64 = libc::MAP_FIXED_NOREPLACE as u64;
        const MREMAP_FIXED: u64 = libc::MREMAP_FIXED as u64;
        let errno = -self.result().filter(|r| *r < 0)?;
        if errno == i64::from(libc::EINVAL) {
            return None;
        }
        match &self.body {
            EventBody::Mprotect { .. } => Some(
                "mprotect changes region after region and stops at the first \
                 error (a hole: ENOMEM; a shared file opened read-only: EACCES), \
                 keeping the changes made before it",
            ),
            EventBody::Mremap { flags, .. } if flags & MREMAP_FIXED != 0 => Some(
                "mremap to a fixed address unmaps the target (and shrinks the \
                 source) before it moves, and keeps that when the move fails",
            ),
            EventBody::Mmap { flags, .. }
                if flags & MAP_FIXED != 0
                    && flags & MAP_FIXED_NOREPLACE == 0
                    && errno != i64::from(libc::EBADF)
                    && errno != i64::from(libc::EACCES) =>
            {
                Some(
                    "a MAP_FIXED mmap that fails after clearing the target range \
                     (the file's mmap hook failed) leaves it unmapped",
                )
            }
            EventBody::RemapFilePages { .. } => Some(
                "remap_file_pages is an mmap over part of the mapping, which can \
                 fail after clearing it",
            ),
            _ => None,
        }
    }
}
