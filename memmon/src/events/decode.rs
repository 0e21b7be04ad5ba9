//! Ring-buffer record bytes -> [`Event`].

use std::mem::size_of;

use memmon_common::{
    EventHeader, EventKind, ExecEvent, ExitEvent, FileMmapEvent, ForkEvent, SyscallEvent,
    VmaNameEvent, file_status,
};
use thiserror::Error;

use super::{Comm, Event, EventBody, MappedFile, Meta, Syscall};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {got} bytes is shorter than the {need} bytes of a {what}")]
    Truncated {
        what: &'static str,
        need: usize,
        got: usize,
    },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("syscall record with unknown syscall number {0}")]
    UnknownSyscall(u32),
}

/// Copies a `#[repr(C)]` record out of possibly unaligned bytes.
fn read<T: Copy>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Truncated {
            what,
            need: size_of::<T>(),
            got: bytes.len(),
        });
    }
    // SAFETY: length checked above; T is a plain-old-data record from
    // memmon-common (integers and byte arrays only), valid for any bits.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The bytes before the first NUL, lossily as UTF-8.
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn meta(header: &EventHeader) -> Meta {
    Meta {
        pid: header.tgid,
        tid: header.tid,
        ts_ns: header.ts_ns,
        comm: Comm::from_kernel(&header.comm),
        call_site: 0,
        stack_id: None,
    }
}

/// The kernel's stack id; None for `memmon_common::NO_STACK` (any
/// negative id).
fn stack_id(raw: &SyscallEvent) -> Option<u32> {
    u32::try_from(raw.stack_id).ok()
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let header: EventHeader = read(bytes, "record header")?;
    let kind = EventKind::from_u32(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    let mut meta = meta(&header);
    let body = match kind {
        EventKind::Syscall => {
            let raw: SyscallEvent = read(bytes, "syscall record")?;
            meta.call_site = raw.call_site;
            meta.stack_id = stack_id(&raw);
            syscall_body(&raw)?
        }
        EventKind::FileMmap => {
            let raw: FileMmapEvent = read(bytes, "file mmap record")?;
            meta.call_site = raw.syscall.call_site;
            meta.stack_id = stack_id(&raw.syscall);
            let mut body = syscall_body(&raw.syscall)?;
            if let EventBody::Mmap { file, .. } = &mut body {
                *file = mapped_file(&raw).map(Box::new);
            }
            body
        }
        EventKind::Exec => {
            let raw: ExecEvent = read(bytes, "exec record")?;
            EventBody::Exec {
                filename: c_string(&raw.filename),
                old_tid: raw.old_tid,
            }
        }
        EventKind::Fork => {
            let raw: ForkEvent = read(bytes, "fork record")?;
            EventBody::Fork {
                child_pid: raw.child_tgid,
                child_tid: raw.child_tid,
                clone_flags: raw.clone_flags,
            }
        }
        EventKind::Exit => {
            let raw: ExitEvent = read(bytes, "exit record")?;
            EventBody::Exit {
                group_dead: raw.group_dead != 0,
            }
        }
        EventKind::VmaName => {
            let raw: VmaNameEvent = read(bytes, "vma-name record")?;
            let name = (raw.name[0] != 0).then(|| c_string(&raw.name));
            EventBody::VmaName {
                addr: raw.addr,
                len: raw.len,
                name,
                ret: raw.ret,
            }
        }
    };
    Ok(Event { meta, body })
}

/// The kernel's dev_t: 12 bits of major above 20 of minor.
const MINOR_BITS: u32 = 20;

fn mapped_file(raw: &FileMmapEvent) -> Option<MappedFile> {
    if raw.status & file_status::FOUND == 0 {
        return None;
    }
    let path = (raw.status & file_status::PATH_COMPLETE != 0).then(|| {
        let used = &raw.path[..(raw.path_len as usize).min(raw.path.len())];
        path_from_components(used, raw.status & file_status::DELETED != 0)
    });
    Some(MappedFile {
        dev_major: raw.dev >> MINOR_BITS,
        dev_minor: raw.dev & ((1 << MINOR_BITS) - 1),
        inode: raw.ino,
        path,
    })
}

/// NUL-terminated components, leaf first (as the kernel walk reads them)
/// -> "/a/b/leaf", as d_path prints it.
pub(super) fn path_from_components(bytes: &[u8], deleted: bool) -> String {
    let mut path = String::with_capacity(bytes.len() + 11);
    let components = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if !components.is_empty() {
        for name in components.rsplit(|&b| b == 0) {
            path.push('/');
            path.push_str(&String::from_utf8_lossy(name));
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    if deleted {
        path.push_str(" (deleted)");
    }
    path
}

fn syscall_body(raw: &SyscallEvent) -> Result<EventBody, DecodeError> {
    let a = raw.args;
    let ret = raw.ret;
    let syscall = Syscall::from_nr(raw.nr).ok_or(DecodeError::UnknownSyscall(raw.nr))?;
    Ok(match syscall {
        Syscall::Mmap => EventBody::Mmap {
            addr: a[0],
            len: a[1],
            prot: a[2],
            flags: a[3],
            // The tracepoint gives fd as unsigned long; -1 is all ones.
            fd: a[4] as i32 as i64,
            offset: a[5],
            ret,
            file: None,
        },
        Syscall::Munmap => EventBody::Munmap {
            addr: a[0],
            len: a[1],
            ret,
        },
        Syscall::Brk => EventBody::Brk { addr: a[0], ret },
        Syscall::Mprotect => EventBody::Mprotect {
            addr: a[0],
            len: a[1],
            prot: a[2],
            pkey: None,
            ret,
        },
        Syscall::PkeyMprotect => EventBody::Mprotect {
            addr: a[0],
            len: a[1],
            prot: a[2],
            pkey: Some(a[3] as i32),
            ret,
        },
        Syscall::Mremap => EventBody::Mremap {
            old_addr: a[0],
            old_len: a[1],
            new_len: a[2],
            flags: a[3],
            new_addr: a[4],
            ret,
        },
        Syscall::Shmat => EventBody::Shmat {
            shmid: a[0] as i32,
            addr: a[1],
            flags: a[2],
            ret,
        },
        Syscall::Shmdt => EventBody::Shmdt { addr: a[0], ret },
        Syscall::IoSetup => EventBody::IoSetup {
            nr_events: a[0],
            ring: a[memmon_common::IO_SETUP_RING_ARG],
            ret,
        },
        Syscall::IoDestroy => EventBody::IoDestroy { ring: a[0], ret },
        Syscall::RemapFilePages => EventBody::RemapFilePages {
            start: a[0],
            size: a[1],
            pgoff: a[3],
            flags: a[4],
            ret,
        },
    })
}

#[cfg(test)]
mod tests {
    use memmon_common::{CLONE_THREAD, COMM_LEN, FILENAME_LEN, VMA_NAME_LEN};

    use super::*;
    use crate::events::tests::anon_mmap;

    fn header(kind: EventKind) -> EventHeader {
        let mut comm = [0u8; COMM_LEN];
        comm[..7].copy_from_slice(b"fixture");
        EventHeader {
            kind: kind as u32,
            tgid: 1234,
            tid: 1235,
            _pad0: 0,
            ts_ns: 42,
            comm,
        }
    }

    fn bytes_of<T>(value: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain #[repr(C)] record.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    fn syscall(nr: u32, args: [u64; 6], ret: i64) -> Vec<u8> {
        bytes_of(&SyscallEvent {
            header: header(EventKind::Syscall),
            nr,
            _pad0: 0,
            args,
            ret,
            call_site: 0x5555_5555_1234,
            stack_id: memmon_common::NO_STACK,
            _pad1: 0,
        })
    }

    fn file_mmap(status: u32, components: &[u8]) -> Vec<u8> {
        let mut raw = FileMmapEvent {
            syscall: SyscallEvent {
                header: header(EventKind::FileMmap),
                nr: libc::SYS_mmap as u32,
                _pad0: 0,
                args: [0, 8192, 5, 0x2, 3, 4096],
                ret: 0x7f15_a082_3000,
                call_site: 0x5555_5555_1234,
                stack_id: 7,
                _pad1: 0,
            },
            ino: 1_234_567,
            dev: (259 << 20) | 3,
            status,
            path_len: components.len() as u32,
            _pad0: 0,
            path: [0; memmon_common::FILE_PATH_ROOM + memmon_common::FILE_NAME_READ],
        };
        raw.path[..components.len()].copy_from_slice(components);
        bytes_of(&raw)
    }

    #[test]
    fn decodes_file_mmaps_with_the_kernels_path() {
        use file_status::{DELETED, FOUND, PATH_COMPLETE};
        let file = |status, components: &[u8]| match decode(&file_mmap(status, components))
            .unwrap()
            .body
        {
            EventBody::Mmap {
                file, offset, fd, ..
            } => {
                assert_eq!((offset, fd), (4096, 3));
                file
            }
            other => panic!("not an mmap: {other:?}"),
        };
        let event = decode(&file_mmap(FOUND, b"")).unwrap();
        assert_eq!(event.meta.stack_id, Some(7));
        let libc_so = b"libc.so.6\0x86_64-linux-gnu\0lib\0usr\0";
        let found = file(FOUND | PATH_COMPLETE, libc_so).unwrap();
        assert_eq!(
            found.path.as_deref(),
            Some("/usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        assert_eq!(
            (found.dev_major, found.dev_minor, found.inode),
            (259, 3, 1_234_567)
        );
        let deleted = file(FOUND | PATH_COMPLETE | DELETED, b"memfd:jit\0").unwrap();
        assert_eq!(deleted.path.as_deref(), Some("/memfd:jit (deleted)"));
        // Too deep for the walk: identity known, the path left to /proc.
        let partial = file(FOUND, b"leaf\0").unwrap();
        assert_eq!((partial.path, partial.inode), (None, 1_234_567));
        assert_eq!(file(0, b""), None);
        assert_eq!(path_from_components(b"", false), "/");
    }

    #[test]
    fn decodes_mmap_with_negative_fd() {
        let raw = syscall(
            libc::SYS_mmap as u32,
            [0, 8192, 3, 0x22, u64::MAX, 0],
            0x7f15_a082_3000,
        );
        let event = decode(&raw).unwrap();
        assert_eq!(
            event.meta,
            Meta {
                pid: 1234,
                tid: 1235,
                ts_ns: 42,
                comm: "fixture".into(),
                call_site: 0x5555_5555_1234,
                stack_id: None,
            }
        );
        assert_eq!(event.body, anon_mmap(8192, 0x7f15_a082_3000));
        assert_eq!(event.kind(), "mmap");
        assert!(!event.failed());
    }

    #[test]
    fn decodes_every_syscall_kind() {
        for syscall_kind in Syscall::ALL {
            let event = decode(&syscall(syscall_kind.nr(), [1, 2, 3, 4, 5, 6], -12)).unwrap();
            assert_eq!(event.syscall(), Some(syscall_kind));
            assert_eq!(event.kind(), syscall_kind.name());
            assert!(event.failed());
        }
    }

    #[test]
    fn decodes_exec_fork_exit_and_names() {
        let mut filename = [0u8; FILENAME_LEN];
        filename[..9].copy_from_slice(b"/bin/true");
        let exec = ExecEvent {
            header: header(EventKind::Exec),
            old_tid: 1235,
            _pad0: 0,
            filename,
        };
        assert_eq!(
            decode(&bytes_of(&exec)).unwrap().body,
            EventBody::Exec {
                filename: "/bin/true".into(),
                old_tid: 1235
            }
        );

        let thread = ForkEvent {
            header: header(EventKind::Fork),
            child_tgid: 1234,
            child_tid: 1300,
            clone_flags: CLONE_THREAD | 0x100,
        };
        assert_eq!(
            decode(&bytes_of(&thread)).unwrap().body,
            EventBody::Fork {
                child_pid: 1234,
                child_tid: 1300,
                clone_flags: CLONE_THREAD | 0x100
            }
        );

        let exit = ExitEvent {
            header: header(EventKind::Exit),
            group_dead: 1,
            _pad0: [0; 7],
        };
        assert_eq!(
            decode(&bytes_of(&exit)).unwrap().body,
            EventBody::Exit { group_dead: true }
        );

        let mut name = [0u8; VMA_NAME_LEN];
        name[..5].copy_from_slice(b"arena");
        let named = VmaNameEvent {
            header: header(EventKind::VmaName),
            addr: 0x1000,
            len: 0x2000,
            ret: 0,
            name,
        };
        assert_eq!(
            decode(&bytes_of(&named)).unwrap().body,
            EventBody::VmaName {
                addr: 0x1000,
                len: 0x2000,
                name: Some("arena".into()),
                ret: 0
            }
        );
    }

    #[test]
    fn rejects_truncated_and_unknown_records() {
        let raw = syscall(libc::SYS_munmap as u32, [0; 6], 0);
        assert!(matches!(
            decode(&raw[..raw.len() - 1]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&raw[..10]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(decode(&[]), Err(DecodeError::Truncated { .. })));
        let mut bad = raw.clone();
        bad[0] = 99;
        assert_eq!(decode(&bad), Err(DecodeError::UnknownKind(99)));
        assert_eq!(
            decode(&syscall(9999, [0; 6], 0)),
            Err(DecodeError::UnknownSyscall(9999))
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = decode(&bytes);
        }
    }

    // ---- fuzzing: `cargo xtask fuzz` runs these with many more cases ------

    use proptest::prelude::*;

    use crate::model::AddressSpace;

    /// Syscall arguments near the edges: page boundaries, the top of the
    /// address space, sign bits, and small random values.
    fn arg() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            (0u64..64).prop_map(|p| p * 4096),
            (0u64..64).prop_map(|p| 0x7f00_0000_0000 + p * 4096),
            Just(u64::MAX),
            Just(u64::MAX - 4095),
            Just(1 << 63),
            Just(0),
            0u64..16,
        ]
    }

    fn record() -> impl Strategy<Value = Vec<u8>> {
        let nr = prop_oneof![
            proptest::sample::select(Syscall::ALL.to_vec()).prop_map(|s| s.nr()),
            any::<u32>(),
        ];
        let syscall_record = (nr, proptest::array::uniform6(arg()), arg())
            .prop_map(|(nr, args, ret)| syscall(nr, args, ret as i64));
        let exec = proptest::collection::vec(any::<u8>(), FILENAME_LEN).prop_map(|bytes| {
            let mut filename = [0u8; FILENAME_LEN];
            filename.copy_from_slice(&bytes);
            bytes_of(&ExecEvent {
                header: header(EventKind::Exec),
                old_tid: 1,
                _pad0: 0,
                filename,
            })
        });
        let fork = (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(
            |(child_tgid, child_tid, clone_flags)| {
                bytes_of(&ForkEvent {
                    header: header(EventKind::Fork),
                    child_tgid,
                    child_tid,
                    clone_flags: clone_flags & (CLONE_THREAD | 0xff),
                })
            },
        );
        let exit = any::<u8>().prop_map(|group_dead| {
            bytes_of(&ExitEvent {
                header: header(EventKind::Exit),
                group_dead,
                _pad0: [0; 7],
            })
        });
        let name = (
            arg(),
            arg(),
            arg(),
            proptest::collection::vec(any::<u8>(), VMA_NAME_LEN),
        )
            .prop_map(|(addr, len, ret, bytes)| {
                let mut name = [0u8; VMA_NAME_LEN];
                name.copy_from_slice(&bytes);
                bytes_of(&VmaNameEvent {
                    header: header(EventKind::VmaName),
                    addr,
                    len,
                    ret: ret as i64,
                    name,
                })
            });
        prop_oneof![4 => syscall_record, 1 => exec, 1 => fork, 1 => exit, 1 => name]
    }

    /// A record with a few bytes changed or cut: what a layout mismatch
    /// between the kernel object and this build would deliver.
    fn damaged() -> impl Strategy<Value = Vec<u8>> {
        (
            record(),
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            proptest::option::of(any::<usize>()),
        )
            .prop_map(|(mut bytes, flips, cut)| {
                let n = bytes.len();
                for (at, b) in flips {
                    bytes[at % n] = b;
                }
                if let Some(cut) = cut {
                    bytes.truncate(cut % (n + 1));
                }
                bytes
            })
    }

    proptest::proptest! {
        /// Decoding, printing and applying a sequence of records to one
        /// model never panics, whatever the arguments and damage.
        #[test]
        fn fuzz_records_through_the_model(records in proptest::collection::vec(damaged(), 1..24)) {
            let mut space = AddressSpace::new();
            for bytes in &records {
                let Ok(event) = decode(bytes) else { continue };
                let _ = (event.to_line(), event.to_json(), event.kind(), event.failed());
                let (op, _unresolved) = crate::tracker::to_mem_op(&event);
                if let Some(op) = op {
                    space.apply(&op);
                }
            }
            let mut last_end = 0;
            for region in space.regions() {
                prop_assert!(region.start < region.end, "empty region {:?}", region);
                prop_assert!(region.start >= last_end, "overlap at {:#x}", region.start);
                last_end = region.end;
            }
        }

        /// Undamaged records of a known kind always decode.
        #[test]
        fn fuzz_whole_records_decode(bytes in record()) {
            let header: EventHeader = read(&bytes, "header").unwrap();
            let known_nr = header.kind != EventKind::Syscall as u32 || {
                let raw: SyscallEvent = read(&bytes, "syscall").unwrap();
                Syscall::ALL.iter().any(|s| s.nr() == raw.nr)
            };
            prop_assert_eq!(decode(&bytes).is_ok(), known_nr);
        }
    }
}
