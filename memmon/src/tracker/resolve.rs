//! Identifying SysV segments attached by shmat. (Mapped files are
//! identified by the kernel programs at the mmap itself: see
//! `memmon_common::FileMmapEvent`.)

use std::{fs, os::unix::fs::MetadataExt as _};

use crate::model::{Backing, page_align_up};

pub trait Resolver {
    /// The SysV segment `shmid` attached at `addr`, with its size.
    fn shm_segment(&self, pid: u32, shmid: i32, addr: u64) -> Option<(Backing, u64)>;
}

/// Resolves through /proc/sysvipc/shm and /proc/PID/map_files/START-END.
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
    /// SysV segments live on the kernel's internal shm mount, which no user
    /// can stall.
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
}
