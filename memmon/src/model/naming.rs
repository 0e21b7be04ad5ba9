//! shmdt and prctl(PR_SET_VMA_ANON_NAME).

use super::AddressSpace;
use super::ops::{SHARED_ANON_PATH, shared_anon_backing};
use super::region::Backing;

const ANON_SHMEM_PREFIX: &str = "[anon_shmem:";

impl AddressSpace {
    /// shmdt(addr): removes the segment attached at `addr`: the File region
    /// starting there at offset 0 and the contiguous ones continuing it.
    pub fn shm_detach(&mut self, addr: u64) {
        let Some(first) = self.regions.get(&addr) else {
            return;
        };
        // Like ipc/shm.c: the segment's page N is mapped at addr + N pages.
        if !first.backing.is_file() || first.offset != 0 {
            return;
        }
        let file = first.backing.clone();
        let mut end = addr;
        for region in self.regions.range(addr..).map(|(_, r)| r) {
            let continues = region.start == end
                && region.backing == file
                && region.offset == region.start - addr;
            if !continues {
                break;
            }
            end = region.end;
        }
        self.take_range(addr, end);
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
