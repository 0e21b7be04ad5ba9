//! One mapped region of an address space, as the kernel's VMA shows it.

use serde::{Deserialize, Serialize};

use super::ops::{PROT_EXEC, PROT_READ, PROT_WRITE};

pub const PAGE_SIZE: u64 = 4096;

/// Rounds up to the next page boundary (saturating at the top of the space).
pub const fn page_align_up(value: u64) -> u64 {
    match value.checked_add(PAGE_SIZE - 1) {
        Some(v) => v & !(PAGE_SIZE - 1),
        None => !(PAGE_SIZE - 1),
    }
}

/// The four permission characters of /proc/PID/maps: `rwxp` / `rwxs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// `s` (MAP_SHARED) rather than `p`.
    pub shared: bool,
}

impl Perms {
    /// From mmap/mprotect `prot` bits and the sharing mode.
    pub fn from_prot(prot: u64, shared: bool) -> Self {
        Self {
            read: prot & PROT_READ != 0,
            write: prot & PROT_WRITE != 0,
            exec: prot & PROT_EXEC != 0,
            shared,
        }
    }

    /// Parses the 4-character field of a maps line, e.g. `r-xp`.
    pub fn parse(field: &str) -> Option<Self> {
        let b = field.as_bytes();
        if b.len() != 4 {
            return None;
        }
        let flag = |c: u8, yes: u8| match c {
            c if c == yes => Some(true),
            b'-' => Some(false),
            _ => None,
        };
        Some(Self {
            read: flag(b[0], b'r')?,
            write: flag(b[1], b'w')?,
            exec: flag(b[2], b'x')?,
            shared: match b[3] {
                b's' => true,
                b'p' => false,
                _ => return None,
            },
        })
    }

    pub fn is_none(&self) -> bool {
        !self.read && !self.write && !self.exec
    }
}

impl std::fmt::Display for Perms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = |on: bool, ch: char| if on { ch } else { '-' };
        write!(
            f,
            "{}{}{}{}",
            c(self.read, 'r'),
            c(self.write, 'w'),
            c(self.exec, 'x'),
            if self.shared { 's' } else { 'p' }
        )
    }
}

/// What backs a region.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Backing {
    /// Anonymous memory. /proc names it `[heap]` or `[stack]` by position
    /// (see `AddressSpace::display_path`), or `[anon:NAME]` when named with
    /// prctl(PR_SET_VMA_ANON_NAME).
    Anonymous { name: Option<String> },
    /// A file (including shmem files: memfd, SysV shm, /dev/shm, and
    /// MAP_SHARED|MAP_ANONYMOUS, which the kernel shows as `/dev/zero (deleted)`).
    /// `path` is exactly as /proc prints it, ` (deleted)` suffix included.
    File {
        path: String,
        dev_major: u32,
        dev_minor: u32,
        inode: u64,
    },
    /// A kernel special mapping with a fixed name: `[vdso]`, `[vvar]`,
    /// `[vvar_vclock]`, `[vsyscall]`, `[uprobes]`, ...
    Special { name: String },
}

impl Backing {
    pub const fn anonymous() -> Self {
        Backing::Anonymous { name: None }
    }

    pub fn is_file(&self) -> bool {
        matches!(self, Backing::File { .. })
    }

    /// A SysV shared memory segment: the kernel's internal shm mount
    /// (an anonymous device) names them `/SYSV<key> (deleted)`.
    pub fn is_sysv_shm(&self) -> bool {
        matches!(self, Backing::File { path, dev_major: 0, .. }
            if path.starts_with("/SYSV") && path.ends_with(" (deleted)"))
    }
}

/// One region `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub perms: Perms,
    /// File offset of `start` (only meaningful for `Backing::File`).
    pub offset: u64,
    pub backing: Backing,
    /// Created by mmap with MAP_STACK (glibc thread stacks), when known.
    #[serde(default)]
    pub map_stack: bool,
    /// VM_GROWSDOWN (the main stack, MAP_GROWSDOWN): the kernel never merges
    /// such a VMA with one lacking the flag, and that decides what `[stack]`
    /// covers.
    #[serde(default)]
    pub grows_down: bool,
}

impl Region {
    /// A plain region: not created with MAP_STACK, not growing down.
    pub fn new(start: u64, end: u64, perms: Perms, offset: u64, backing: Backing) -> Self {
        Region {
            start,
            end,
            perms,
            offset,
            backing,
            map_stack: false,
            grows_down: false,
        }
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The file offset that maps `addr` (which must lie in the region).
    /// Wrapping, as the kernel's `pgoff << PAGE_SHIFT` does: a hostile
    /// offset must not panic (compare.rs wraps the same way).
    pub fn offset_at(&self, addr: u64) -> u64 {
        self.offset.wrapping_add(addr - self.start)
    }

    /// The sub-range `[start, end)` of this region, with the offset adjusted.
    pub fn slice(&self, start: u64, end: u64) -> Region {
        debug_assert!(self.start <= start && start < end && end <= self.end);
        Region {
            start,
            end,
            offset: self.offset_at(start),
            ..self.clone()
        }
    }

    /// Whether `next` can be folded into `self` as the kernel merges VMAs:
    /// adjacent, same attributes, and offsets continuing (anonymous memory
    /// has none; `[anon_shmem:X]` does).
    pub fn can_merge(&self, next: &Region) -> bool {
        self.end == next.start
            && self.perms == next.perms
            && self.backing == next.backing
            && self.map_stack == next.map_stack
            && self.grows_down == next.grows_down
            && (matches!(self.backing, Backing::Anonymous { .. })
                || self.offset_at(self.end) == next.offset)
    }
}
