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
    /// A memory syscall ([`tracepoints::MEMORY_SYSCALLS`]), paired
    /// enter+exit: [`SyscallEvent`].
    Syscall = 1,
    /// `sched_process_exec`: [`ExecEvent`].
    Exec = 2,
    /// `sched_process_fork` (processes and threads): [`ForkEvent`].
    Fork = 3,
    /// `sched_process_exit` (one per thread): [`ExitEvent`].
    Exit = 4,
    /// `prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, ...)`: [`VmaNameEvent`].
    VmaName = 5,
}

impl EventKind {
    pub const fn from_u32(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Syscall),
            2 => Some(Self::Exec),
            3 => Some(Self::Fork),
            4 => Some(Self::Exit),
            5 => Some(Self::VmaName),
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

/// One memory syscall: the arguments seen at entry and the result at exit.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SyscallEvent {
    pub header: EventHeader,
    /// The raw syscall number (`__syscall_nr`); userspace maps it to a name.
    pub nr: u32,
    pub _pad0: u32,
    /// Raw syscall arguments in order, as the tracepoint gives them.
    pub args: [u64; 6],
    /// Return value: an address or value, or `-errno`.
    pub ret: i64,
    /// Nanoseconds from syscall entry to exit.
    pub duration_ns: u64,
}

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
    /// clone flags when the kernel programs saw the clone/clone3 call, else 0
    /// (fork(2), vfork(2) and kernel-internal clones).
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

/// Per-thread state kept between `sys_enter` and `sys_exit`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PendingSyscall {
    pub nr: u32,
    pub _pad0: u32,
    pub enter_ns: u64,
    pub args: [u64; 6],
}

/// Indices into the per-CPU `COUNTERS` array.
pub mod counter {
    /// Records dropped because the ring buffer was full.
    pub const RINGBUF_LOST: u32 = 0;
    /// `sys_exit` seen with no matching `sys_enter` (programs attached
    /// mid-syscall, or the pairing entry evicted): the process is marked
    /// lost, like a ring-buffer loss.
    pub const UNPAIRED_EXIT: u32 = 1;
    /// A process could not be marked lost because `LOST_PIDS` was full:
    /// userspace must resync every process.
    pub const LOST_PIDS_FULL: u32 = 2;
    /// The mmap lock was taken for writing by a syscall the syscall
    /// tracepoints do not show (compat, `int 0x80`, or not modelled): the
    /// process was marked lost.
    pub const UNSEEN_LAYOUT_CHANGE: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Names of the maps and globals, shared so that both sides spell them alike.
pub mod names {
    pub const EVENTS: &str = "EVENTS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const LOST_PIDS: &str = "LOST_PIDS";
    pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";
    pub const LAYOUT: &str = "LAYOUT";
    pub const SEEN_SYSCALLS: &str = "SEEN_SYSCALLS";
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

/// Offsets in x86_64's `struct pt_regs` (the user ABI: ptrace's
/// `user_regs_struct` has the same layout).
pub mod pt_regs {
    /// `ax`: `-ENOSYS` from syscall entry until the syscall returns.
    pub const AX: usize = 80;
    /// `orig_ax`: the syscall number (native or compat numbering).
    pub const ORIG_AX: usize = 120;
    /// What syscall entry stores in `ax`.
    pub const ENOSYS: u64 = -38i64 as u64;
}

/// Where `syscalls:sys_enter_*` and `sys_exit_*` records keep their fields
/// (unchanged since Linux 4.x on every architecture memmon builds for).
/// The kernel programs read them with direct context loads, which are
/// several times cheaper than `bpf_probe_read` but need the offset in the
/// instruction itself: the verifier refuses a context pointer moved by a
/// register. So these are build-time constants, and the loader checks the
/// tracefs format files agree before loading.
pub mod syscall_record {
    /// `__syscall_nr` (an `int`).
    pub const NR: u32 = 8;
    /// The first argument (`unsigned long`s follow, 8 bytes apart).
    pub const ARGS: u32 = 16;
    /// `ret` (a `long`) in `sys_exit_*`.
    pub const RET: u32 = 16;
}

/// Tracepoint field offsets, read by userspace from tracefs `format` files
/// and handed to the kernel programs as a global, so that a kernel whose
/// layouts moved is handled (or refused by name) instead of misread.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointLayout {
    /// Offset of the first `unsigned long` argument in `sys_enter_*`.
    pub syscall_args: u32,
    /// Offset of `ret` in `sys_exit_*`.
    pub syscall_ret: u32,
    /// Offset of `__syscall_nr` in both.
    pub syscall_nr: u32,
    /// `sched_process_fork.child_pid`.
    pub fork_child_pid: u32,
    /// `sched_process_exec.filename` (a `__data_loc`).
    pub exec_filename: u32,
    /// `sched_process_exec.old_pid`.
    pub exec_old_pid: u32,
    /// `sched_process_exit.group_dead`, or [`TracepointLayout::ABSENT`] on
    /// kernels without it (then the leader's exit stands for the group).
    pub exit_group_dead: u32,
    /// Syscall numbers of clone and clone3 on this architecture, to tell
    /// threads from processes at fork.
    pub nr_clone: u32,
    pub nr_clone3: u32,
    pub nr_prctl: u32,
    /// io_setup writes its ring's address to user memory: the exit
    /// program reads it (see [`IO_SETUP_RING_ARG`]).
    pub nr_io_setup: u32,
    pub _pad0: u32,
}

/// The argument slot of an io_setup [`SyscallEvent`] that carries the ring
/// address read from `*ctxp` at exit (io_setup has two arguments; the
/// slots past them are otherwise unused).
pub const IO_SETUP_RING_ARG: usize = 2;

impl TracepointLayout {
    pub const ABSENT: u32 = u32::MAX;
    /// The layout of Linux 6.x on x86_64; userspace always overwrites it.
    pub const DEFAULT: Self = Self {
        syscall_args: syscall_record::ARGS,
        syscall_ret: syscall_record::RET,
        syscall_nr: syscall_record::NR,
        fork_child_pid: 20,
        exec_filename: 8,
        exec_old_pid: 16,
        exit_group_dead: 32,
        nr_clone: 56,
        nr_clone3: 435,
        nr_prctl: 157,
        nr_io_setup: 206,
        _pad0: 0,
    };
}

/// `CLONE_THREAD`: the child shares the parent's thread group.
pub const CLONE_THREAD: u64 = 0x0001_0000;

#[cfg(feature = "user")]
mod user_pod {
    // SAFETY: plain #[repr(C)] integers with no padding left implicit.
    unsafe impl aya::Pod for super::TracepointLayout {}
    // SAFETY: plain #[repr(C)] integers and arrays, padding explicit.
    unsafe impl aya::Pod for super::PendingSyscall {}
}

const _: () = {
    assert!(core::mem::size_of::<EventHeader>() == 40);
    assert!(core::mem::size_of::<SyscallEvent>() == 112);
    assert!(core::mem::size_of::<ExecEvent>() == 304);
    assert!(core::mem::size_of::<ForkEvent>() == 56);
    assert!(core::mem::size_of::<ExitEvent>() == 48);
    assert!(core::mem::size_of::<VmaNameEvent>() == 144);
    assert!(core::mem::size_of::<TracepointLayout>() == 48);
};
