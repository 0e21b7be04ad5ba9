//! shmdt and prctl(PR_SET_VMA_ANON_NAME).

use super::AddressSpace;
use super::ops::{SHARED_ANON_PATH, shared_anon_backing};
use super::region::Backing;

const ANON_SHMEM_PREFIX: &str = "[anon_shmem:";

impl AddressSpace {
    /// shmdt(addr), as ipc/shm.c does it: the first SysV region at or
    /// above `addr` whose file offset is its distance from `addr` names the
    /// segment; every region of that segment placed the same way goes.
    /// Neither needs to start at `addr`: munmap, MAP_FIXED or mprotect may
    /// have removed or split the first pages, and shmdt still detaches the
    /// rest. (The torture test found the model keeping those.)
    pub fn shm_detach(&mut self, addr: u64) {
        let placed = |r: &super::Region| r.offset == r.start - addr;
        let Some(file) = self
            .regions_from(addr)
            .find(|r| r.backing.is_sysv_shm() && placed(r))
            .map(|r| r.backing.clone())
        else {
            return;
        };
        let detached: Vec<(u64, u64)> = self
            .regions_from(addr)
            .filter(|r| r.backing == file && placed(r))
            .map(|r| (r.start, r.end))
            .collect();
        for (start, end) in detached {
            self.take_range(start, end);
        }
    }

    /// Names (or un-names, with `None`) the anonymous memory in the range.
    /// Shared anonymous memory becomes `[anon_shmem:NAME]`; file mappings
    /// are left alone (the kernel refuses them).
    pub fn set_anon_name(&mut self, addr: u64, len: u64, name: Option<&str>) {
        self.edit_range(addr, len, |region| {
            if let Some(backing) = renamed(&region.backing, name) {
                region.backing = backing;
            }
        });
    }
}

/// The backing after naming, or None when naming does not apply.
fn renamed(backing: &Backing, name: Option<&str>) -> Option<Backing> {
    match backing {
        Backing::Anonymous { .. } => Some(Backing::Anonymous {
            name: name.map(str::to_owned),
        }),
        Backing::File { path, .. } if path == SHARED_ANON_PATH => name.map(anon_shmem),
        Backing::Special { name: old } if old.starts_with(ANON_SHMEM_PREFIX) => Some(match name {
            Some(name) => anon_shmem(name),
            // The shmem file's identity was not kept while named.
            None => shared_anon_backing(),
        }),
        _ => None,
    }
}

fn anon_shmem(name: &str) -> Backing {
    Backing::Special {
        name: format!("{ANON_SHMEM_PREFIX}{name}]"),
    }
}
