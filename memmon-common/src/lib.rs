//! Types shared by the kernel programs (`memmon-ebpf`) and userspace (`memmon`).
//!
//! Every record the kernel writes into the ring buffer starts with an
//! [`EventHeader`]; its `kind` says which of the structs below follows. All
//! structs are `#[repr(C)]` with explicit padding so that both sides agree on
//! the layout byte for byte; the `const` assertions at the bottom pin the
//! sizes so that an accidental change breaks the build instead of the decoder.
#![no_std]

pub mod tracepoints;

/// Length of `task_struct::comm`, including the NUL.
pub const COMM_LEN: usize = 16;
/// Bytes of the exec filename we copy; longer paths are truncated.
pub const FILENAME_LEN: usize = 256;
/// The kernel's ANON_VMA_NAME_MAX_LEN (prctl(PR_SET_VMA_ANON_NAME)).
pub const VMA_NAME_LEN: usize = 80;

/// `prctl` option that names anonymous memory (`PR_SET_VMA`).
pub const PR_SET_VMA: u64 = 0x5356_4d41;
/// `PR_SET_VMA` sub-option for anonymous names.
pub const PR_SET_VMA_ANON_NAME: u64 = 0;

/// What follows the header of a ring-buffer record.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A memory syscall ([`tracepoints::MEMORY_SYSCALLS`]), seen at its
    /// exit: [`SyscallEvent`].
    Syscall = 1,
    /// `sched_process_exec`: [`ExecEvent`].
    Exec = 2,
    /// `sched_process_fork` (processes and threads): [`ForkEvent`].
    Fork = 3,
    /// `sched_process_exit` (one per thread): [`ExitEvent`].
    Exit = 4,
    /// `prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, ...)`: [`VmaNameEvent`].
    VmaName = 5,
    /// A successful mmap of a file, with the file's identity read from the
    /// fd table at sys_exit: [`FileMmapEvent`]. Anonymous mmaps stay
    /// [`EventKind::Syscall`] records (small).
    FileMmap = 6,
}

impl EventKind {
    /// How many kinds there are (numbered 1..=COUNT).
    pub const COUNT: u32 = 6;

    pub const fn from_u32(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Syscall),
            2 => Some(Self::Exec),
            3 => Some(Self::Fork),
            4 => Some(Self::Exit),
            5 => Some(Self::VmaName),
            6 => Some(Self::FileMmap),
            _ => None,
        }
    }
}

/// Common prefix of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An [`EventKind`] as u32.
    pub kind: u32,
    /// Thread group id (what userspace calls the pid).
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    pub _pad0: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, in nanoseconds.
    pub ts_ns: u64,
    /// The task's comm, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// One memory syscall, seen at its exit: the original arguments (from the
/// registers saved at entry) and the result. No duration: that would need
/// an enter program, which doubles the cost per call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SyscallEvent {
    pub header: EventHeader,
    /// The raw syscall number (`__syscall_nr`); userspace maps it to a name.
    pub nr: u32,
    pub _pad0: u32,
    /// Raw syscall arguments in order: the full registers, so an `int`
    /// argument is only the low 32 bits.
    pub args: [u64; 6],
    /// Return value: an address or value, or `-errno`.
    pub ret: i64,
    /// The call site: the word at the user stack pointer at the syscall's
    /// exit. Glibc's syscall wrappers are leaf functions, so it is the
    /// return address into the wrapper's caller. 0 when unreadable or
    /// when call sites are off (`CALL_SITES`).
    pub call_site: u64,
    /// The user stack's id in `STACK_TRACES` when stacks are on
    /// (`STACKS`), else [`NO_STACK`] (off, or the capture failed).
    pub stack_id: i32,
    pub _pad1: u32,
}

/// [`SyscallEvent::stack_id`] when no stack was captured.
pub const NO_STACK: i32 = -1;
/// Stacks `STACK_TRACES` holds; a new stack whose bucket is taken is
/// counted, never stored over another (no `BPF_F_REUSE_STACKID`: an old
/// region's id must keep naming its own stack).
pub const STACK_MAP_ENTRIES: u32 = 8192;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// The tid that called execve (differs from tgid when a non-leader thread execs).
    pub old_tid: u32,
    pub _pad0: u32,
    /// NUL-terminated path as given to exec, truncated to FILENAME_LEN - 1.
    pub filename: [u8; FILENAME_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkEvent {
    /// `tgid`/`tid` in the header are the parent's.
    pub header: EventHeader,
    pub child_tgid: u32,
    pub child_tid: u32,
    /// clone(2)'s flags (the register value, shown, not trusted), else 0
    /// (clone3, fork, vfork); `CLONE_THREAD` is set from the kernel's task
    /// whenever the child joined the parent's thread group.
    pub clone_flags: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// 1 when this thread was the last of its group: the address space is gone.
    pub group_dead: u8,
    pub _pad0: [u8; 7],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VmaNameEvent {
    pub header: EventHeader,
    pub addr: u64,
    pub len: u64,
    /// prctl's return value (0 or -errno).
    pub ret: i64,
    /// NUL-terminated name; all zero when the name was cleared (NULL pointer).
    pub name: [u8; VMA_NAME_LEN],
}

/// Bytes of [`FileMmapEvent::path`] that components may start in; one
/// more component (at most [`FILE_NAME_READ`] bytes) may run past it.
pub const FILE_PATH_ROOM: usize = 512;
/// Longest component copy: NAME_MAX plus the NUL.
pub const FILE_NAME_READ: usize = 256;
/// Path components the kernel walk visits (mount crossings count too).
/// The verifier explores every iteration of the walk: at 48 it gave up
/// (E2BIG, over a million instructions); deeper paths are named by /proc.
pub const FILE_PATH_DEPTH: u32 = 16;

/// What the kernel programs could read of a mapped file
/// ([`FileMmapEvent::status`] bits).
pub mod file_status {
    /// The fd named an open file: `dev` and `ino` are valid.
    pub const FOUND: u32 = 1;
    /// `path` holds every component up to the root of the mount namespace.
    pub const PATH_COMPLETE: u32 = 2;
    /// The dentry is unlinked: /proc shows the path with " (deleted)".
    pub const DELETED: u32 = 4;
}

/// A successful file mmap: the syscall plus the file behind `args[4]`,
/// read from the task's fd table while the fd is still open.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileMmapEvent {
    pub syscall: SyscallEvent,
    /// `inode->i_ino`.
    pub ino: u64,
    /// `inode->i_sb->s_dev`, the kernel's dev_t (major << 20 | minor).
    pub dev: u32,
    /// [`file_status`] bits.
    pub status: u32,
    /// Bytes of `path` written.
    pub path_len: u32,
    pub _pad0: u32,
    /// The path's components leaf first, each NUL-terminated (the walk
    /// goes up from the file); userspace reverses them.
    pub path: [u8; FILE_PATH_ROOM + FILE_NAME_READ],
}

/// Kernel struct member offsets (bytes), read by userspace from
/// /sys/kernel/btf/vmlinux and handed to the programs as a global like
/// [`TracepointLayout`]: no kernel version's layout is built in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLayout {
    pub task_files: u32,
    pub task_tgid: u32,
    pub task_pid: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_inode: u32,
    /// `file.f_path.dentry` and `file.f_path.mnt`, each from the file.
    pub file_dentry: u32,
    pub file_vfsmount: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub sb_dev: u32,
    pub dentry_parent: u32,
    /// `dentry.d_name.name`, from the dentry.
    pub dentry_name: u32,
    /// `dentry.d_hash.pprev`, from the dentry: NULL when unhashed.
    pub dentry_hash_pprev: u32,
    pub dentry_op: u32,
    pub dentry_op_dname: u32,
    pub vfsmount_root: u32,
    /// Where `struct vfsmount mnt` sits inside `struct mount`.
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    /// mmap's syscall number, to pick the file mmaps out at sys_exit.
    pub nr_mmap: u32,
    /// 0 until userspace fills it in: the programs then read nothing.
    pub valid: u32,
}

/// Indices into the per-CPU `COUNTERS` array: losses, and every error
/// path of the kernel programs (each has its slot; userspace exports them
/// labelled from [`counter::ERRORS`] and [`counter::STACK_FAILURES`]).
pub mod counter {
    use super::EventKind;

    /// A process could not be marked lost because `LOST_PIDS` was full:
    /// userspace must resync every process.
    pub const LOST_PIDS_FULL: u32 = 0;
    /// The mmap lock was taken for writing by a syscall the syscall
    /// tracepoints do not show (compat, `int 0x80`, or not modelled): the
    /// process was marked lost.
    pub const UNSEEN_LAYOUT_CHANGE: u32 = 1;
    /// `bpf_get_stackid` failed: no free entry (-ENOMEM), ...
    pub const STACK_MAP_FULL: u32 = 2;
    /// ... the stack's bucket holds another stack (-EEXIST), ...
    pub const STACK_COLLISION: u32 = 3;
    /// ... or anything else (-EFAULT: no user stack to walk).
    pub const STACK_OTHER: u32 = 4;
    /// Records of each [`EventKind`] dropped because the ring buffer was
    /// full, one slot per kind: see [`ringbuf_full`].
    pub const RINGBUF_FULL: u32 = 5;
    /// The user stack word that is the call site could not be read.
    pub const READ_CALL_SITE: u32 = RINGBUF_FULL + EventKind::COUNT;
    /// The ring address io_setup stored at `*ctxp` could not be read.
    pub const READ_IO_SETUP_RING: u32 = READ_CALL_SITE + 1;
    /// A file mmap's fd led to no file the programs could read: its
    /// identity is left to userspace.
    pub const READ_MAPPED_FILE: u32 = READ_CALL_SITE + 2;
    /// prctl(PR_SET_VMA_ANON_NAME)'s name could not be read.
    pub const READ_VMA_NAME: u32 = READ_CALL_SITE + 3;
    /// A field of a `sched_process_exec` record could not be read.
    pub const READ_EXEC: u32 = READ_CALL_SITE + 4;
    /// A field of a `sched_process_exit` record could not be read.
    pub const READ_EXIT: u32 = READ_CALL_SITE + 5;
    /// The forked child's task could not be read (both sides resync).
    pub const READ_FORK_CHILD: u32 = READ_CALL_SITE + 6;
    pub const COUNT: u32 = READ_CALL_SITE + 7;

    /// The slot counting `kind`'s records lost to a full ring buffer.
    pub const fn ringbuf_full(kind: EventKind) -> u32 {
        RINGBUF_FULL + kind as u32 - 1
    }

    /// Each error slot with its labels: what failed (`kind`) and the
    /// event it was for.
    pub const ERRORS: [(u32, &str, &str); 13] = [
        (ringbuf_full(EventKind::Syscall), "ringbuf_full", "syscall"),
        (ringbuf_full(EventKind::Exec), "ringbuf_full", "exec"),
        (ringbuf_full(EventKind::Fork), "ringbuf_full", "fork"),
        (ringbuf_full(EventKind::Exit), "ringbuf_full", "exit"),
        (ringbuf_full(EventKind::VmaName), "ringbuf_full", "vma_name"),
        (
            ringbuf_full(EventKind::FileMmap),
            "ringbuf_full",
            "file_mmap",
        ),
        (READ_CALL_SITE, "read_call_site", "syscall"),
        (READ_IO_SETUP_RING, "read_io_setup_ring", "syscall"),
        (READ_MAPPED_FILE, "read_mapped_file", "file_mmap"),
        (READ_VMA_NAME, "read_vma_name", "vma_name"),
        (READ_EXEC, "read_record", "exec"),
        (READ_EXIT, "read_record", "exit"),
        (READ_FORK_CHILD, "read_child_task", "fork"),
    ];

    /// The `bpf_get_stackid` failure slots, by reason.
    pub const STACK_FAILURES: [(u32, &str); 3] = [
        (STACK_MAP_FULL, "map_full"),
        (STACK_COLLISION, "collision"),
        (STACK_OTHER, "other"),
    ];
}

/// Names of the maps and globals, shared so that both sides spell them alike.
pub mod names {
    pub const EVENTS: &str = "EVENTS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const LOST_PIDS: &str = "LOST_PIDS";
    pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";
    pub const LAYOUT: &str = "LAYOUT";
    pub const KERNEL_LAYOUT: &str = "KERNEL_LAYOUT";
    pub const SEEN_SYSCALLS: &str = "SEEN_SYSCALLS";
    pub const CALL_SITES: &str = "CALL_SITES";
    pub const STACKS: &str = "STACKS";
    pub const STACK_TRACES: &str = "STACK_TRACES";
}

/// Native syscall numbers whose layout changes memmon sees without the
/// mmap-lock safety net, as a bitmap (bit `nr % 64` of word `nr / 64`).
/// Userspace fills it (`memmon::bpf::unseen`); numbers past the end count
/// as unseen.
pub const SEEN_SYSCALLS_WORDS: usize = 8;

/// Where `mmap_lock:mmap_lock_acquire_returned` keeps `write` (a bool),
/// read by a direct context load; the loader checks tracefs agrees.
pub mod mmap_lock_record {
    pub const WRITE: u32 = 24;
}

/// Where `syscalls:sys_exit_*` records keep their fields
/// (unchanged since Linux 4.x on every architecture memmon builds for).
/// The kernel programs read them with direct context loads, which are
/// several times cheaper than `bpf_probe_read` but need the offset in the
/// instruction itself: the verifier refuses a context pointer moved by a
/// register. So these are build-time constants, and the loader checks the
/// tracefs format files agree before loading.
pub mod syscall_record {
    /// `__syscall_nr` (an `int`).
    pub const NR: u32 = 8;
    /// `ret` (a `long`).
    pub const RET: u32 = 16;
}

/// Tracepoint field offsets, read by userspace from tracefs `format` files
/// and handed to the kernel programs as a global, so that a kernel whose
/// layouts moved is handled (or refused by name) instead of misread.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointLayout {
    /// `sched_process_exec.filename` (a `__data_loc`).
    pub exec_filename: u32,
    /// `sched_process_exec.old_pid`.
    pub exec_old_pid: u32,
    /// `sched_process_exit.group_dead`, or [`TracepointLayout::ABSENT`] on
    /// kernels without it (then the leader's exit stands for the group).
    pub exit_group_dead: u32,
    /// clone's syscall number on this architecture: the fork program
    /// shows its flags (a register value).
    pub nr_clone: u32,
    pub nr_prctl: u32,
    /// io_setup writes its ring's address to user memory: the exit
    /// program reads it (see [`IO_SETUP_RING_ARG`]).
    pub nr_io_setup: u32,
}

/// The argument slot of an io_setup [`SyscallEvent`] that carries the ring
/// address read from `*ctxp` at exit (io_setup has two arguments; the
/// slots past them are otherwise unused).
pub const IO_SETUP_RING_ARG: usize = 2;

impl TracepointLayout {
    pub const ABSENT: u32 = u32::MAX;
    /// The layout of Linux 6.x on x86_64; userspace always overwrites it.
    pub const DEFAULT: Self = Self {
        exec_filename: 8,
        exec_old_pid: 16,
        exit_group_dead: 32,
        nr_clone: 56,
        nr_prctl: 157,
        nr_io_setup: 206,
    };
}

/// mmap's MAP_ANONYMOUS (x86 and arm64 agree).
pub const MAP_ANONYMOUS: u64 = 0x20;

/// `CLONE_THREAD`: the child shares the parent's thread group.
pub const CLONE_THREAD: u64 = 0x0001_0000;

#[cfg(feature = "user")]
mod user_pod {
    // SAFETY: plain #[repr(C)] integers with no padding left implicit.
    unsafe impl aya::Pod for super::TracepointLayout {}
    // SAFETY: plain #[repr(C)] u32s.
    unsafe impl aya::Pod for super::KernelLayout {}
}

const _: () = {
    assert!(core::mem::size_of::<EventHeader>() == 40);
    assert!(core::mem::size_of::<SyscallEvent>() == 120);
    assert!(core::mem::size_of::<ExecEvent>() == 304);
    assert!(core::mem::size_of::<ForkEvent>() == 56);
    assert!(core::mem::size_of::<ExitEvent>() == 48);
    assert!(core::mem::size_of::<VmaNameEvent>() == 144);
    assert!(core::mem::size_of::<TracepointLayout>() == 24);
    assert!(core::mem::size_of::<FileMmapEvent>() == 120 + 24 + 768);
    assert!(core::mem::size_of::<KernelLayout>() == 92);
    // Every ring-buffer kind and read has its own slot, below COUNT.
    let mut seen = 0u64;
    let mut i = 0;
    while i < counter::ERRORS.len() {
        let slot = counter::ERRORS[i].0;
        assert!(slot < counter::COUNT && seen & (1 << slot) == 0);
        seen |= 1 << slot;
        i += 1;
    }
    assert!(counter::ERRORS.len() as u32 == counter::COUNT - counter::RINGBUF_FULL);
};
