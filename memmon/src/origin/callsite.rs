//! Call sites normalized to (object, file offset) when the event is applied,
//! so they still symbolize after the process exits or unmaps the library.

use std::{
    collections::{HashMap, HashSet},
    hash::BuildHasherDefault,
    sync::Arc,
};

use crate::tracker::pid_hash::PidHasher;

use crate::model::{AddressSpace, Backing};

/// A user code address, and where it lies in its file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallSite {
    /// The virtual address in the process at the time.
    pub addr: u64,
    /// The mapped file holding the code, as /proc names it; None for code
    /// in anonymous memory (JIT'd code) or an unmapped address.
    pub object: Option<Arc<str>>,
    /// The file offset of `addr` in `object` (what symbolizers take);
    /// `addr` itself when there is no object.
    pub offset: u64,
    /// The object's device (major, minor): network and FUSE files are not
    /// read to symbolize, as for ELF summaries.
    pub dev: (u32, u32),
}

impl CallSite {
    /// Normalizes `addr` against the layout it was called from: the region
    /// holding it names the file and gives the offset. 0 means the kernel
    /// could not read the word: no call site.
    pub fn normalize(space: &AddressSpace, addr: u64, interner: &mut Interner) -> Option<Self> {
        if addr == 0 {
            return None;
        }
        let (object, offset, dev) = match space.region_at(addr) {
            Some(region) => match &region.backing {
                Backing::File {
                    path,
                    dev_major,
                    dev_minor,
                    inode,
                } => (
                    Some(interner.object(path, (*dev_major, *dev_minor, *inode))),
                    region.offset_at(addr),
                    (*dev_major, *dev_minor),
                ),
                _ => (None, addr, (0, 0)),
            },
            None => (None, addr, (0, 0)),
        };
        Some(CallSite {
            addr,
            object,
            offset,
            dev,
        })
    }
}

/// Shares one `Arc<str>` per object path, so normalizing a call site does
/// not allocate once the library has been seen, and call-site keys can
/// compare objects by pointer.
#[derive(Debug, Default)]
pub struct Interner {
    paths: HashSet<Arc<str>>,
    /// The object last interned for a file, by (major, minor, inode): a
    /// lookup by number, not by hashing the path, on every event.
    by_file: HashMap<(u32, u32, u64), Arc<str>, BuildHasherDefault<PidHasher>>,
}

/// Distinct object paths kept. Keys compare objects by pointer, so an
/// interned path is never dropped; past this many, new objects share one
/// name that says so (a bound on what hostile processes can make us hold).
const MAX_INTERNED: usize = 65_536;
const TOO_MANY: &str = "<object not kept: too many distinct objects>";

impl Interner {
    /// The shared name of the file `id` mapped at `path`.
    pub fn object(&mut self, path: &str, id: (u32, u32, u64)) -> Arc<str> {
        if let Some(known) = self.by_file.get(&id)
            && **known == *path
        {
            return Arc::clone(known);
        }
        let name = self.intern(path);
        if self.by_file.len() < MAX_INTERNED {
            self.by_file.insert(id, Arc::clone(&name));
        }
        name
    }

    pub fn intern(&mut self, path: &str) -> Arc<str> {
        if let Some(known) = self.paths.get(path) {
            return Arc::clone(known);
        }
        let path = if self.paths.len() >= MAX_INTERNED {
            TOO_MANY
        } else {
            path
        };
        if let Some(known) = self.paths.get(path) {
            return Arc::clone(known);
        }
        let new: Arc<str> = Arc::from(path);
        self.paths.insert(Arc::clone(&new));
        new
    }
}
