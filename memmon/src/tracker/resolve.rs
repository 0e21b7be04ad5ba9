//! Identifying the file behind a new mapping. The only /proc access on the
//! event path: a readlink and a stat of one entry, never a maps read (which
//! would take the target's mmap_lock for the whole walk). The stat reaches
//! the file's filesystem, which a user can stall (a stopped FUSE server):
//! the daemon makes it through [`BoundedResolver`].

use std::{fs, os::unix::fs::MetadataExt as _};

use crate::model::{Backing, page_align_up};

pub trait Resolver {
    /// The file mapped at exactly `[start, end)` (one whole VMA) by `pid`.
    fn file_backing(&self, pid: u32, start: u64, end: u64) -> Option<Backing>;
    /// The SysV segment `shmid` attached at `addr`, with its size.
    fn shm_segment(&self, pid: u32, shmid: i32, addr: u64) -> Option<(Backing, u64)>;
}

/// Resolves through /proc/PID/map_files/START-END: the mapping itself, so
/// the answer cannot come from a different file. (Looking up the fd is no
/// substitute: by the time the event is read the loader has usually closed
/// it and the number may name a socket.) The range must be one whole VMA;
/// when the mapping was overlaid meanwhile, the tracker retries with the
/// model's region bounds after the batch.
pub struct ProcResolver;

fn backing_of(link: &str) -> Option<Backing> {
    let path = fs::read_link(link).ok()?;
    let meta = fs::metadata(link).ok()?;
    let dev = meta.dev();
    Some(Backing::File {
        path: path.to_string_lossy().into_owned(),
        dev_major: libc::major(dev),
        dev_minor: libc::minor(dev),
        inode: meta.ino(),
    })
}

impl Resolver for ProcResolver {
    fn file_backing(&self, pid: u32, start: u64, end: u64) -> Option<Backing> {
        backing_of(&format!("/proc/{pid}/map_files/{start:x}-{end:x}"))
    }

    fn shm_segment(&self, pid: u32, shmid: i32, addr: u64) -> Option<(Backing, u64)> {
        let table = fs::read_to_string("/proc/sysvipc/shm").ok()?;
        let (key, size) = sysv_segment(&table, shmid)?;
        let end = addr.saturating_add(page_align_up(size));
        let backing = backing_of(&format!("/proc/{pid}/map_files/{addr:x}-{end:x}")).unwrap_or(
            Backing::File {
                path: format!("/SYSV{:08x} (deleted)", key as u32),
                dev_major: 0,
                dev_minor: 1,
                inode: shmid as u64,
            },
        );
        Some((backing, size))
    }
}

/// [`ProcResolver`] with each file lookup on an I/O pool and a short
/// deadline, refused at once while every worker is stuck: a stalled
/// filesystem costs the caller at most one deadline per worker, after which
/// its mappings stay unresolved and are resynced from /proc/PID/maps (which
/// names the file without touching it).
pub struct BoundedResolver {
    pool: crate::io_pool::IoPool,
    deadline: std::time::Duration,
}

/// Long enough for a stat on a busy host, short next to a drain interval.
pub const LOOKUP_DEADLINE: std::time::Duration = std::time::Duration::from_millis(25);
/// Workers for lookups: each stuck file holds one.
pub const LOOKUP_THREADS: usize = 2;

impl BoundedResolver {
    pub fn new(threads: usize, deadline: std::time::Duration) -> std::io::Result<Self> {
        Ok(Self {
            pool: crate::io_pool::IoPool::new(threads)?,
            deadline,
        })
    }
}

impl Resolver for BoundedResolver {
    fn file_backing(&self, pid: u32, start: u64, end: u64) -> Option<Backing> {
        let lookup = move || ProcResolver.file_backing(pid, start, end);
        self.pool.run_if_idle(self.deadline, lookup).ok().flatten()
    }

    /// SysV segments live on the kernel's internal shm mount, which no user
    /// can stall: looked up directly.
    fn shm_segment(&self, pid: u32, shmid: i32, addr: u64) -> Option<(Backing, u64)> {
        ProcResolver.shm_segment(pid, shmid, addr)
    }
}

/// `(key, size)` of segment `shmid` in /proc/sysvipc/shm's text.
pub fn sysv_segment(table: &str, shmid: i32) -> Option<(i64, u64)> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let id: i32 = fields.get(1)?.parse().ok()?;
        (id == shmid).then_some(())?;
        Some((fields.first()?.parse().ok()?, fields.get(3)?.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sysv_segments_by_id() {
        let table = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n         0         5  600                 65536  1234  1234      1     0     0     0     0 1700000000          0 1700000000                 0                 0\n1234567890         7  666                  4096  1  1      0     0     0     0     0 0 0 0 0 0\n";
        assert_eq!(sysv_segment(table, 5), Some((0, 65536)));
        assert_eq!(sysv_segment(table, 7), Some((1234567890, 4096)));
        assert_eq!(sysv_segment(table, 6), None);
        assert_eq!(sysv_segment("garbage", 5), None);
    }

    #[test]
    fn resolves_own_mapped_executable() {
        let maps = fs::read_to_string("/proc/self/maps").unwrap();
        let exe = fs::read_link("/proc/self/exe").unwrap();
        let line = maps
            .lines()
            .find(|l| l.ends_with(exe.to_str().unwrap()))
            .unwrap();
        let range = line.split_whitespace().next().unwrap();
        let (lo, hi) = range.split_once('-').unwrap();
        let (lo, hi) = (
            u64::from_str_radix(lo, 16).unwrap(),
            u64::from_str_radix(hi, 16).unwrap(),
        );
        match ProcResolver.file_backing(std::process::id(), lo, hi) {
            Some(Backing::File { path, inode, .. }) => {
                assert_eq!(path, exe.to_str().unwrap());
                assert_eq!(inode, fs::metadata(&exe).unwrap().ino());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            ProcResolver.file_backing(std::process::id(), 0x1000, 0x2000),
            None
        );
        let bounded = BoundedResolver::new(1, std::time::Duration::from_secs(5)).unwrap();
        assert!(matches!(
            bounded.file_backing(std::process::id(), lo, hi),
            Some(Backing::File { .. })
        ));
    }
}
