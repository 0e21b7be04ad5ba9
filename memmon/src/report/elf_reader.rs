//! Reading mapped ELF files for layouts and summaries, off the daemon's
//! loop and with a deadline: the file's filesystem may never answer.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use super::{ElfCache, remote_fs::device_is_remote};
use crate::{
    elf::ElfInfo,
    io_pool::{IoError, IoPool, lock},
};

/// How long one file may take before its regions are marked unreadable.
pub const DEFAULT_READ_DEADLINE: Duration = Duration::from_secs(2);

/// The note on regions of a file on a FUSE or network filesystem.
pub const SKIPPED_REMOTE: &str = "not read (FUSE or network filesystem)";

/// What reading one mapped file gave.
#[derive(Clone, Debug)]
pub enum ElfRead {
    Elf(Arc<ElfInfo>),
    /// Not ELF, or gone.
    NotElf,
    /// Not read: why, for the output.
    Unreadable(String),
}

pub struct ElfReader {
    cache: Arc<Mutex<ElfCache>>,
    pool: IoPool,
    deadline: Duration,
    read_remote: bool,
    /// Files whose read timed out and is still running: asked again, they
    /// answer at once rather than cost another deadline.
    stuck: Arc<Mutex<HashSet<String>>>,
}

impl ElfReader {
    pub fn new(pool: IoPool, deadline: Duration, read_remote: bool) -> Self {
        Self {
            cache: Arc::new(Mutex::new(ElfCache::default())),
            pool,
            deadline,
            read_remote,
            stuck: Arc::default(),
        }
    }

    pub fn pool(&self) -> &IoPool {
        &self.pool
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The ELF `pid` maps from `path` on device `dev`, through `link` (its
    /// map_files entry).
    pub fn read(&self, pid: u32, path: &str, link: String, dev: (u32, u32)) -> ElfRead {
        if lock(&self.stuck).contains(path) {
            return ElfRead::Unreadable(IoError::TimedOut.to_string());
        }
        let cache = Arc::clone(&self.cache);
        let stuck = Arc::clone(&self.stuck);
        let finished = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&finished);
        let owned = path.to_owned();
        let read_remote = self.read_remote;
        let job = move || {
            let result = read_one(&cache, pid, &owned, &link, dev, read_remote);
            let mut stuck = lock(&stuck);
            done.store(true, Ordering::SeqCst);
            stuck.remove(&owned);
            result
        };
        match self.pool.run(self.deadline, job) {
            Ok(read) => read,
            Err(err) => {
                let mut stuck = lock(&self.stuck);
                if err == IoError::TimedOut && !finished.load(Ordering::SeqCst) {
                    stuck.insert(path.to_owned());
                }
                ElfRead::Unreadable(err.to_string())
            }
        }
    }
}

fn read_one(
    cache: &Mutex<ElfCache>,
    pid: u32,
    path: &str,
    link: &str,
    (major, minor): (u32, u32),
    read_remote: bool,
) -> ElfRead {
    if !read_remote && device_is_remote(pid, major, minor) {
        return ElfRead::Unreadable(SKIPPED_REMOTE.to_owned());
    }
    ElfCache::read(cache, path, link).map_or(ElfRead::NotElf, ElfRead::Elf)
}
