//! Parsed ELF files, shared by every process that maps them.

use std::{collections::HashMap, sync::Arc};

use crate::elf::{ElfInfo, read_elf};

/// Entries kept before the cache starts over (libraries are few; this only
/// bounds memory when many distinct executables come and go).
const CAPACITY: usize = 1024;

#[derive(Default)]
pub struct ElfCache {
    /// By (path as maps shows it, inode); `None` records a file that is not
    /// ELF or could not be read, so it isn't retried on every query.
    entries: HashMap<(String, u64), Option<Arc<ElfInfo>>>,
}

impl ElfCache {
    /// The ELF at `path`, read through `open_as` (a /proc/PID/map_files
    /// link, which works for deleted files and other mount namespaces).
    pub fn get(&mut self, path: &str, inode: u64, open_as: &str) -> Option<Arc<ElfInfo>> {
        let key = (path.to_owned(), inode);
        if let Some(hit) = self.entries.get(&key) {
            return hit.clone();
        }
        if self.entries.len() >= CAPACITY {
            self.entries.clear();
        }
        let parsed = read_elf(std::path::Path::new(open_as))
            .or_else(|_| read_elf(std::path::Path::new(path.trim_end_matches(" (deleted)"))))
            .ok()
            .map(Arc::new);
        self.entries.insert(key, parsed.clone());
        parsed
    }
}
