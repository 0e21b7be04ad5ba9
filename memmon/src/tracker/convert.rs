//! Decoded syscall events -> model operations.

use crate::{
    events::{Event, EventBody, MappedFile},
    model::{
        Backing,
        ops::{MAP_ANONYMOUS, MemOp},
    },
};

/// Shown while the kernel programs could not read a mapped file's whole
/// path (deeper than their walk, a name the filesystem makes up); the
/// process is resynced from /proc/PID/maps at once, off the event path.
pub const PATH_FROM_PROC: &str = "<path pending: from /proc>";

/// The backing of a file mmap from what the kernel read at the call;
/// true when /proc must name it.
fn file_backing(file: Option<&MappedFile>) -> (Backing, bool) {
    match file {
        Some(MappedFile {
            dev_major,
            dev_minor,
            inode,
            path: Some(path),
        }) => (
            Backing::File {
                path: path.clone(),
                dev_major: *dev_major,
                dev_minor: *dev_minor,
                inode: *inode,
            },
            false,
        ),
        partial => (
            Backing::File {
                path: PATH_FROM_PROC.into(),
                dev_major: partial.map_or(0, |f| f.dev_major),
                dev_minor: partial.map_or(0, |f| f.dev_minor),
                inode: partial.map_or(0, |f| f.inode),
            },
            true,
        ),
    }
}

/// The model operation for a syscall event (None for failures and events
/// that change no mapping), and whether a file could not be identified
/// (the process then needs a resync from /proc).
pub fn to_mem_op(event: &Event) -> (Option<MemOp>, bool) {
    if event.failed() {
        return (None, false);
    }
    match &event.body {
        EventBody::Mmap {
            len,
            prot,
            flags,
            offset,
            ret,
            file,
            ..
        } => {
            let addr = *ret as u64;
            let (backing, unresolved) = if flags & MAP_ANONYMOUS != 0 {
                (Backing::anonymous(), false)
            } else {
                file_backing(file.as_deref())
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
        EventBody::Shmat { .. }
        | EventBody::IoSetup { .. }
        | EventBody::IoDestroy { .. }
        | EventBody::RemapFilePages { .. }
        | EventBody::Exec { .. }
        | EventBody::Fork { .. }
        | EventBody::Exit { .. } => (None, false),
    }
}
