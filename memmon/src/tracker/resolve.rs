//! Identifying SysV segments attached by shmat. (Mapped files are
//! identified by the kernel programs at the mmap itself: see
//! `memmon_common::FileMmapEvent`.)

use crate::model::Backing;

pub trait Resolver {
    /// The SysV segment `shmid` attached at `addr`, with its size.
    fn shm_segment(&self, pid: u32, shmid: i32, addr: u64) -> Option<(Backing, u64)>;
}

/// The daemon's resolver: it names nothing, because the loop that applies
/// events does no /proc I/O (reading /proc/sysvipc/shm and map_files per
/// shmat cost a third of the loop's time under load, and any user can
/// shmat in a loop). A successful shmat resyncs its process instead (see
/// `Syscall::resync_reason`), off the loop.
pub struct ProcResolver;

impl Resolver for ProcResolver {
    fn shm_segment(&self, _pid: u32, _shmid: i32, _addr: u64) -> Option<(Backing, u64)> {
        None
    }
}
