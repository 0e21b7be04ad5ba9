//! Successful memory syscalls as idempotent operations on the model.

use std::ops::Bound::{Excluded, Included};

use serde::{Deserialize, Serialize};

use super::{AddressSpace, Backing, BrkState, Perms, Region, page_align_up};

/// Declares libc's flag bits as the u64 words the tracepoints carry (all
/// are positive, so the cast only widens).
macro_rules! flags_from_libc {
    ($($name:ident),* $(,)?) => {
        $(pub const $name: u64 = libc::$name as u64;)*
    };
}

// The flag bits the model interprets.
flags_from_libc!(
    MAP_SHARED,
    MAP_PRIVATE,
    MAP_SHARED_VALIDATE,
    MAP_TYPE,
    MAP_ANONYMOUS,
    MAP_GROWSDOWN,
    MAP_STACK,
    MREMAP_MAYMOVE,
    MREMAP_FIXED,
    MREMAP_DONTUNMAP,
    PROT_READ,
    PROT_WRITE,
    PROT_EXEC,
);

/// How /proc names shared anonymous memory (a shmem file with no name).
pub const SHARED_ANON_PATH: &str = "/dev/zero (deleted)";

/// One successful syscall, with addresses already the syscall's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemOp {
    /// mmap. (A successful shmat resyncs its process instead: its
    /// segment's size is only in the kernel.)
    Mmap {
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        /// Resolved by the caller; ignored for MAP_ANONYMOUS.
        backing: Backing,
        offset: u64,
    },
    Munmap {
        addr: u64,
        len: u64,
    },
    /// mprotect and pkey_mprotect.
    Mprotect {
        addr: u64,
        len: u64,
        prot: u64,
    },
    Mremap {
        old_addr: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        /// The syscall's result.
        new_addr: u64,
    },
    /// The brk syscall's result: the new break.
    Brk {
        brk: u64,
    },
    ShmDetach {
        addr: u64,
    },
    /// prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr, len, name).
    SetAnonName {
        addr: u64,
        len: u64,
        name: Option<String>,
    },
}

/// Shared anonymous memory is a shmem file; /proc prints it like this.
/// The inode is unknown to the model (and not compared).
pub fn shared_anon_backing() -> Backing {
    Backing::File {
        path: SHARED_ANON_PATH.into(),
        dev_major: 0,
        dev_minor: 1,
        inode: 0,
    }
}

/// `[addr, addr + page_align_up(len))`, saturating at the top of the space.
pub(super) fn page_range(addr: u64, len: u64) -> (u64, u64) {
    (addr, addr.saturating_add(page_align_up(len)))
}

impl AddressSpace {
    pub fn apply(&mut self, op: &MemOp) {
        match op {
            MemOp::Mmap {
                addr,
                len,
                prot,
                flags,
                backing,
                offset,
            } => self.mmap(*addr, *len, *prot, *flags, backing.clone(), *offset),
            MemOp::Munmap { addr, len } => self.munmap(*addr, *len),
            MemOp::Mprotect { addr, len, prot } => self.mprotect(*addr, *len, *prot),
            MemOp::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
            } => self.mremap(*old_addr, *old_len, *new_len, *flags, *new_addr),
            MemOp::Brk { brk } => self.set_brk(*brk),
            MemOp::ShmDetach { addr } => self.shm_detach(*addr),
            MemOp::SetAnonName { addr, len, name } => {
                self.set_anon_name(*addr, *len, name.as_deref())
            }
        }
    }

    /// A successful mmap: the range is now exactly this mapping.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        backing: Backing,
        offset: u64,
    ) {
        let (start, end) = page_range(addr, len);
        let shared = matches!(flags & MAP_TYPE, MAP_SHARED | MAP_SHARED_VALIDATE);
        let (backing, offset) = if flags & MAP_ANONYMOUS == 0 {
            (backing, offset)
        } else if shared {
            (shared_anon_backing(), 0)
        } else {
            (Backing::anonymous(), 0)
        };
        self.map_region(Region {
            start,
            end,
            perms: Perms::from_prot(prot, shared),
            offset,
            backing,
            map_stack: flags & MAP_STACK != 0,
            grows_down: flags & MAP_GROWSDOWN != 0,
        });
    }

    pub fn munmap(&mut self, addr: u64, len: u64) {
        let (start, end) = page_range(addr, len);
        self.take_range(start, end);
    }

    /// mprotect/pkey_mprotect: new rwx bits on the mapped parts; the
    /// sharing mode is fixed at mmap time.
    pub fn mprotect(&mut self, addr: u64, len: u64, prot: u64) {
        self.edit_range(addr, len, |region| {
            region.perms = Perms::from_prot(prot, region.perms.shared);
        });
    }

    /// Applies `edit` to the mapped parts of the page range, split at its
    /// ends, then merges what became equal: how mprotect and naming change
    /// part of a mapping.
    pub(super) fn edit_range(&mut self, addr: u64, len: u64, mut edit: impl FnMut(&mut Region)) {
        let (start, end) = page_range(addr, len);
        if start >= end {
            return;
        }
        self.split_at(start);
        self.split_at(end);
        // After the splits, exactly the regions ending in (start, end] lie inside.
        for (_, region) in self.regions.range_mut((Excluded(start), Included(end))) {
            edit(region);
        }
        self.merge_span(start, end);
    }

    /// The brk syscall's result. Mirrors mm/mmap.c: the heap VMA covers
    /// `[start_brk, page_align_up(brk))`, growing or shrinking by whole pages.
    pub fn set_brk(&mut self, brk: u64) {
        let Some(state) = self.brk else {
            // Nothing known yet: the first result is the initial break.
            self.brk = Some(BrkState {
                start_brk: brk,
                brk,
                exact: true,
            });
            return;
        };
        if brk < state.start_brk {
            // The kernel never returns a break below start_brk; the state
            // must be stale (e.g. an exec not yet seen), so don't guess.
            return;
        }
        let (old, new) = (page_align_up(state.brk), page_align_up(brk));
        if new > old {
            self.map_region(Region::new(
                old,
                new,
                Perms::from_prot(PROT_READ | PROT_WRITE, false),
                0,
                Backing::anonymous(),
            ));
        } else if new < old {
            self.take_range(new, old);
        }
        self.brk = Some(BrkState {
            brk,
            exact: true,
            ..state
        });
    }
}
