//! Decoded syscall events -> model operations.

use super::resolve::Resolver;
use crate::{
    events::{Event, EventBody},
    model::{
        Backing,
        ops::{MAP_ANONYMOUS, MAP_SHARED, MemOp, PROT_EXEC, PROT_READ, PROT_WRITE},
    },
};

/// shmat flags, widened to the u64 the tracepoints carry.
const SHM_RDONLY: u64 = libc::SHM_RDONLY as u64;
const SHM_EXEC: u64 = libc::SHM_EXEC as u64;

/// Shown while a mapped file is unknown; a snapshot replaces it.
pub const UNRESOLVED_PATH: &str = "<unresolved>";

pub(super) fn unresolved_backing() -> Backing {
    Backing::File {
        path: UNRESOLVED_PATH.into(),
        dev_major: 0,
        dev_minor: 0,
        inode: 0,
    }
}

/// The model operation for a syscall event (None for failures and events
/// that change no mapping), and whether a file could not be identified.
pub fn to_mem_op(event: &Event, resolver: &dyn Resolver) -> (Option<MemOp>, bool) {
    if event.failed() {
        return (None, false);
    }
    let pid = event.meta.pid;
    match &event.body {
        EventBody::Mmap {
            len,
            prot,
            flags,
            offset,
            ret,
            ..
        } => {
            let addr = *ret as u64;
            let (backing, unresolved) = if flags & MAP_ANONYMOUS != 0 {
                (Backing::anonymous(), false)
            } else {
                let end = addr.saturating_add(crate::model::page_align_up(*len));
                match resolver.file_backing(pid, addr, end) {
                    Some(backing) => (backing, false),
                    None => (unresolved_backing(), true),
                }
            };
            let op = MemOp::Mmap {
                addr,
                len: *len,
                prot: *prot,
                flags: *flags,
                backing,
                offset: *offset,
            };
            (Some(op), unresolved)
        }
        EventBody::Munmap { addr, len, .. } => (
            Some(MemOp::Munmap {
                addr: *addr,
                len: *len,
            }),
            false,
        ),
        EventBody::Mprotect {
            addr, len, prot, ..
        } => (
            Some(MemOp::Mprotect {
                addr: *addr,
                len: *len,
                prot: *prot,
            }),
            false,
        ),
        EventBody::Mremap {
            old_addr,
            old_len,
            new_len,
            flags,
            ret,
            ..
        } => (
            Some(MemOp::Mremap {
                old_addr: *old_addr,
                old_len: *old_len,
                new_len: *new_len,
                flags: *flags,
                new_addr: *ret as u64,
            }),
            false,
        ),
        EventBody::Brk { ret, .. } => (Some(MemOp::Brk { brk: *ret as u64 }), false),
        EventBody::Shmat {
            shmid, flags, ret, ..
        } => {
            let addr = *ret as u64;
            let mut prot = if flags & SHM_RDONLY != 0 {
                PROT_READ
            } else {
                PROT_READ | PROT_WRITE
            };
            if flags & SHM_EXEC != 0 {
                prot |= PROT_EXEC;
            }
            match resolver.shm_segment(pid, *shmid, addr) {
                Some((backing, size)) => (
                    Some(MemOp::Mmap {
                        addr,
                        len: size,
                        prot,
                        flags: MAP_SHARED,
                        backing,
                        offset: 0,
                    }),
                    false,
                ),
                None => (None, true),
            }
        }
        EventBody::Shmdt { addr, .. } => (Some(MemOp::ShmDetach { addr: *addr }), false),
        EventBody::VmaName {
            addr, len, name, ..
        } => (
            Some(MemOp::SetAnonName {
                addr: *addr,
                len: *len,
                name: name.clone(),
            }),
            false,
        ),
        // Resynced from /proc instead (`Syscall::resync_reason`).
        EventBody::IoSetup { .. }
        | EventBody::IoDestroy { .. }
        | EventBody::RemapFilePages { .. }
        | EventBody::Exec { .. }
        | EventBody::Fork { .. }
        | EventBody::Exit { .. } => (None, false),
    }
}
