//! Call-site names, with blazesym: lazily, only when a user asks, on the
//! I/O pool with a deadline (the object is a file a monitored process
//! chose), and cached by (object, file offset).

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use blazesym::symbolize::{Input, Symbolized, Symbolizer, source::Elf, source::Source};

use crate::{
    io_pool::{IoPool, lock},
    origin::CallSite,
    report::remote_fs::device_is_remote,
};

/// Names remembered; past this the cache starts over.
const MAX_CACHED: usize = 65_536;

type Key = (Arc<str>, u64);

/// Symbolizes normalized call sites for the daemon's workers.
#[derive(Clone)]
pub struct Symbols {
    pool: IoPool,
    deadline: Duration,
    read_remote: bool,
    /// None: the object had no symbol for that offset (or was unreadable).
    names: Arc<Mutex<HashMap<Key, Option<Arc<str>>>>>,
}

impl Symbols {
    pub fn new(pool: IoPool, deadline: Duration, read_remote: bool) -> Self {
        Self {
            pool,
            deadline,
            read_remote,
            names: Arc::default(),
        }
    }

    /// Names for `sites` of process `pid` (whose root the objects are
    /// read through while it lives), in order; None where unknown.
    pub fn names(&self, pid: u32, sites: &[&CallSite]) -> Vec<Option<Arc<str>>> {
        let mut wanted: HashMap<Arc<str>, Vec<u64>> = HashMap::new();
        {
            let names = lock(&self.names);
            for site in sites {
                if let Some(object) = &site.object
                    && !names.contains_key(&(Arc::clone(object), site.offset))
                {
                    wanted
                        .entry(Arc::clone(object))
                        .or_default()
                        .push(site.offset);
                }
            }
        }
        let devs: HashMap<Arc<str>, (u32, u32)> = sites
            .iter()
            .filter_map(|s| s.object.clone().map(|o| (o, s.dev)))
            .collect();
        for (object, offsets) in wanted {
            let dev = devs.get(&object).copied().unwrap_or_default();
            if !self.read_remote && device_is_remote(pid, dev.0, dev.1) {
                self.remember(&object, &offsets, vec![None; offsets.len()]);
                continue;
            }
            let path = object_path(pid, &object);
            let offs = offsets.clone();
            let found = self
                .pool
                .run(self.deadline, move || symbolize(path, &offs))
                .unwrap_or_else(|_| vec![None; offsets.len()]);
            self.remember(&object, &offsets, found);
        }
        let names = lock(&self.names);
        sites
            .iter()
            .map(|site| {
                let object = site.object.as_ref()?;
                names
                    .get(&(Arc::clone(object), site.offset))
                    .cloned()
                    .flatten()
            })
            .collect()
    }

    fn remember(&self, object: &Arc<str>, offsets: &[u64], found: Vec<Option<Arc<str>>>) {
        let mut names = lock(&self.names);
        if names.len() + offsets.len() > MAX_CACHED {
            names.clear();
        }
        for (offset, name) in offsets.iter().zip(found) {
            names.insert((Arc::clone(object), *offset), name);
        }
    }
}

/// The object as the process sees it (its mount namespace), while it
/// lives; else the path as named.
fn object_path(pid: u32, object: &str) -> PathBuf {
    let through_root = PathBuf::from(format!("/proc/{pid}/root{object}"));
    if through_root.exists() {
        through_root
    } else {
        PathBuf::from(object)
    }
}

/// All of one object's offsets in one parse. A symbolizer per job: it
/// is not Send, and one kept per thread would cache every file it saw.
fn symbolize(path: PathBuf, offsets: &[u64]) -> Vec<Option<Arc<str>>> {
    let mut elf = Elf::new(path);
    // ELF symbol tables only: DWARF is not built in, to keep builds lean.
    elf.debug_syms = false;
    match Symbolizer::new().symbolize(&Source::Elf(elf), Input::FileOffset(offsets)) {
        Ok(found) => found
            .into_iter()
            .map(|s| match s {
                Symbolized::Sym(sym) => Some(Arc::from(sym.name.as_ref())),
                Symbolized::Unknown(_) => None,
            })
            .collect(),
        Err(_) => vec![None; offsets.len()],
    }
}
