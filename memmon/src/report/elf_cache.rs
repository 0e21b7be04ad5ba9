//! Parsed ELF files, shared by every process that maps them.

use std::{
    collections::{HashMap, VecDeque},
    os::unix::fs::MetadataExt,
    path::Path,
    sync::{Arc, Mutex},
};

use crate::{
    elf::{ElfInfo, read_elf},
    io_pool::lock,
};

/// What the cache may hold, in (estimated) bytes of parsed headers: a few
/// hundred real libraries take a few MiB; a user mapping many distinct
/// hostile files must not grow the daemon past its memory goal.
pub const DEFAULT_BUDGET_BYTES: usize = 16 << 20;

/// A file's identity: the same path can name another file later, and a
/// file rewritten in place keeps its inode but not its size and mtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

pub struct ElfCache {
    /// `None` records a file that is not ELF or could not be parsed, so it
    /// isn't retried on every query.
    entries: HashMap<FileKey, (Option<Arc<ElfInfo>>, usize)>,
    /// Insertion order, for eviction.
    order: VecDeque<FileKey>,
    bytes: usize,
    budget: usize,
}

impl Default for ElfCache {
    fn default() -> Self {
        Self::with_budget(DEFAULT_BUDGET_BYTES)
    }
}

impl ElfCache {
    pub fn with_budget(budget: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    /// Estimated bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The ELF mapped at `path` (as maps shows it), read through `open_as`
    /// (a /proc/PID/map_files link, which works for deleted files and other
    /// mount namespaces), else through the path itself.
    /// `None` when the file is gone or is not (valid) ELF. The parse runs
    /// with the cache unlocked: other files need not wait for this one.
    pub fn read(cache: &Mutex<Self>, path: &str, open_as: &str) -> Option<Arc<ElfInfo>> {
        let (file, key) = identify(path, open_as)?;
        let hit = lock(cache).lookup(&key);
        hit.unwrap_or_else(|| {
            let parsed = read_elf(Path::new(&file)).ok().map(Arc::new);
            lock(cache).insert(key, parsed.clone());
            parsed
        })
    }

    /// A cached parse (`Some(None)`: known not to be ELF).
    fn lookup(&self, key: &FileKey) -> Option<Option<Arc<ElfInfo>>> {
        self.entries.get(key).map(|(hit, _)| hit.clone())
    }

    fn insert(&mut self, key: FileKey, parsed: Option<Arc<ElfInfo>>) {
        let cost = parsed.as_deref().map_or(0, approx_bytes) + ENTRY_OVERHEAD;
        if cost > self.budget {
            return; // used once, never kept
        }
        while self.bytes + cost > self.budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some((_, c)) = self.entries.remove(&old) {
                self.bytes -= c;
            }
        }
        self.entries.insert(key, (parsed, cost));
        self.order.push_back(key);
        self.bytes += cost;
    }
}

/// Which file `path` (or `open_as`) names now, and the name to open it
/// by. Stats the file: I/O on a path the process chose.
fn identify(path: &str, open_as: &str) -> Option<(String, FileKey)> {
    let plain = path.trim_end_matches(" (deleted)");
    let (file, meta) = [open_as, plain]
        .into_iter()
        .find_map(|p| std::fs::metadata(p).ok().map(|m| (p, m)))?;
    let key = FileKey {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    };
    Some((file.to_owned(), key))
}

const ENTRY_OVERHEAD: usize = 128;

/// Heap bytes of a parsed file, near enough to bound the cache.
fn approx_bytes(info: &ElfInfo) -> usize {
    use std::mem::size_of;
    let sections: usize = info
        .sections
        .iter()
        .map(|s| size_of::<crate::elf::Section>() + s.name.len())
        .sum();
    let segments: usize = info
        .program_headers
        .iter()
        .map(|ph| {
            size_of::<crate::elf::ProgramHeader>()
                + ph.kind.len()
                + ph.sections
                    .iter()
                    .map(|n| size_of::<String>() + n.len())
                    .sum::<usize>()
        })
        .sum();
    // The section index holds one u32 per section-to-segment entry.
    let index: usize = info
        .program_headers
        .iter()
        .map(|ph| ph.sections.len() * 4)
        .sum();
    size_of::<ElfInfo>() + sections + segments + index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_bounds_bytes_and_evicts_oldest_first() {
        let exe = std::env::current_exe().unwrap();
        let exe = exe.to_str().unwrap();
        let cache = Mutex::new(ElfCache::with_budget(ENTRY_OVERHEAD * 2));
        // Not ELF: cached as None, costing only the overhead.
        let dir = std::env::temp_dir().join(format!("memmon-elfcache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files: Vec<String> = (0..3)
            .map(|i| {
                let p = dir.join(format!("f{i}"));
                std::fs::write(&p, format!("not elf {i}")).unwrap();
                p.to_str().unwrap().to_owned()
            })
            .collect();
        for f in &files {
            assert!(ElfCache::read(&cache, f, "/nonexistent").is_none());
        }
        assert_eq!(lock(&cache).entries.len(), 2);
        assert!(lock(&cache).bytes() <= ENTRY_OVERHEAD * 2);
        assert!(!lock(&cache).order.iter().any(|k| {
            let m = std::fs::metadata(&files[0]).unwrap();
            k.ino == m.ino()
        }));
        // A real ELF bigger than the budget is returned but not kept.
        assert!(ElfCache::read(&cache, exe, "/nonexistent").is_some());
        assert_eq!(lock(&cache).entries.len(), 2);
        let roomy = Mutex::new(ElfCache::default());
        let first = ElfCache::read(&roomy, exe, "/nonexistent").unwrap();
        let again = ElfCache::read(&roomy, exe, "/nonexistent").unwrap();
        assert!(Arc::ptr_eq(&first, &again), "parsed once, shared");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_rewritten_file_is_read_again() {
        let dir = std::env::temp_dir().join(format!("memmon-elfcache-rw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("exe");
        let exe = std::env::current_exe().unwrap();
        std::fs::copy(&exe, &path).unwrap();
        let p = path.to_str().unwrap();
        let cache = Mutex::new(ElfCache::default());
        assert!(ElfCache::read(&cache, p, "/nonexistent").is_some());
        // Same inode, new content and size: no stale hit.
        std::fs::write(&path, b"no longer an ELF").unwrap();
        assert!(ElfCache::read(&cache, p, "/nonexistent").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
