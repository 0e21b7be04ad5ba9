//! memmon's kernel programs.
//!
//! Memory syscalls are paired inside the kernel: `sys_enter_*` stores the
//! arguments per thread in `PENDING`, `sys_exit_*` joins them with the result
//! and emits ONE [`SyscallEvent`]. The same two generic programs serve every
//! memory syscall (the syscall number travels in the event) so that adding a
//! syscall is an attach, not a new program. Process lifetime comes from the
//! `sched` tracepoints.
//!
//! Wakeups are batched: records are submitted with `BPF_RB_NO_WAKEUP` and a
//! wakeup is forced only once `WAKEUP_BYTES` are queued; userspace also polls
//! on a short timer. Per-event wakeups cost ~6x more per traced syscall.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod unseen;

use core::ptr::{addr_of_mut, read_volatile};

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
        bpf_probe_read_kernel_str_bytes, bpf_probe_read_user, bpf_probe_read_user_str_bytes,
    },
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use memmon_common::{
    CLONE_THREAD, EventHeader, EventKind, ExecEvent, ExitEvent, ForkEvent, IO_SETUP_RING_ARG,
    PR_SET_VMA, PR_SET_VMA_ANON_NAME, PendingSyscall, SyscallEvent, TracepointLayout, VMA_NAME_LEN,
    VmaNameEvent, counter, syscall_record,
};

/// Userspace sets the real size (`--ringbuf-size`) at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Syscall arguments between enter and exit, per thread. LRU so that a
/// thread killed inside a syscall cannot leak an entry forever.
#[map]
static PENDING: LruHashMap<u32, PendingSyscall> = LruHashMap::with_max_entries(16384, 0);

/// Names passed to prctl(PR_SET_VMA_ANON_NAME), per thread, until its exit.
#[map]
static PENDING_NAME: LruHashMap<u32, [u8; VMA_NAME_LEN]> = LruHashMap::with_max_entries(1024, 0);

/// Loss and pairing counters, see `memmon_common::counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Thread groups that lost at least one record or pairing (value: how
/// many), so that userspace can resync exactly those from /proc. Not LRU:
/// an evicted entry would be a silent gap; a full map is counted
/// (`LOST_PIDS_FULL`) and userspace then resyncs everything.
#[map]
static LOST_PIDS: HashMap<u32, u64> = HashMap::with_max_entries(8192, 0);

/// Queued bytes above which a submit wakes the consumer.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 256 * 1024;

/// Field offsets read from tracefs by userspace.
#[unsafe(no_mangle)]
static LAYOUT: TracepointLayout = TracepointLayout::DEFAULT;

#[inline(always)]
fn layout() -> TracepointLayout {
    // SAFETY: a plain read of a global that userspace patches before load;
    // volatile keeps the compiler from folding in the default.
    unsafe { read_volatile(&LAYOUT) }
}

#[inline(always)]
fn submit_flags() -> u64 {
    // SAFETY: as for `layout`.
    let threshold = unsafe { read_volatile(&WAKEUP_BYTES) };
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
fn bump(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

/// Marks `tgid` for a resync from /proc: something it did was not seen.
#[inline(always)]
fn mark_lost(tgid: u32, records: u64) {
    match LOST_PIDS.get_ptr_mut(tgid) {
        // SAFETY: the pointer comes from the map and is used at once.
        Some(lost) => unsafe { *lost += records },
        None => {
            if LOST_PIDS.insert(tgid, records, 0).is_err() {
                bump(counter::LOST_PIDS_FULL);
            }
        }
    }
}

#[inline(always)]
fn record_loss(tgid: u32) {
    bump(counter::RINGBUF_LOST);
    mark_lost(tgid, 1);
}

/// A sys_exit whose sys_enter was not seen (attached mid-call, or its
/// PENDING entry evicted): its effect is unknown, so the process resyncs.
#[inline(always)]
fn unpaired_exit() {
    bump(counter::UNPAIRED_EXIT);
    mark_lost((bpf_get_current_pid_tgid() >> 32) as u32, 1);
}

/// The integer types the programs read from tracepoint records: valid for
/// any bit pattern, so a copy of any bytes is a value.
trait Plain: Copy {}
impl Plain for u8 {}
impl Plain for i32 {}
impl Plain for u32 {}
impl Plain for i64 {}
impl Plain for u64 {}
impl Plain for [u64; 6] {}

/// The `T` at `offset` in the tracepoint record.
#[inline(always)]
fn field<T: Plain>(ctx: &TracePointContext, offset: u32) -> Result<T, i64> {
    // SAFETY: read_at copies with bpf_probe_read_kernel, which checks the
    // address and returns an error instead of faulting, and `T` is valid for
    // any bytes. Offsets come from the tracepoint's tracefs format file
    // (memmon::bpf::layout), so the bytes are the field's.
    unsafe { ctx.read_at::<T>(offset as usize) }.map_err(|e| e as i64)
}

/// A field of a syscall record at a build-time offset, by a direct context
/// load (no helper call: the hot path's cheapest read). The verifier checks
/// the access is inside the record and aligned, or refuses to load.
#[inline(always)]
fn record<T: Plain, const OFFSET: u32>(ctx: &TracePointContext) -> T {
    // SAFETY: the context is the tracepoint's record, at least as long as
    // the offsets in `syscall_record`, which the loader checked against
    // this kernel's tracefs format files; the fields are naturally aligned
    // and `T` is valid for any bytes.
    unsafe {
        (ctx.as_ptr() as *const u8)
            .add(OFFSET as usize)
            .cast::<T>()
            .read()
    }
}

#[inline(always)]
fn syscall_nr(ctx: &TracePointContext) -> u32 {
    record::<i32, { syscall_record::NR }>(ctx) as u32
}

#[inline(always)]
fn syscall_ret(ctx: &TracePointContext) -> i64 {
    record::<i64, { syscall_record::RET }>(ctx)
}

/// The six argument slots of a `sys_enter_*` record, in one helper call.
/// Not direct loads: one program serves syscalls of 1 to 6 arguments, and
/// the kernel refuses to attach a program whose direct loads reach past a
/// tracepoint's record (munmap's ends after 2). Slots past a syscall's own
/// arguments hold whatever follows its record; the decoder ignores them.
#[inline(always)]
fn syscall_args(ctx: &TracePointContext) -> Result<[u64; 6], i64> {
    field(ctx, syscall_record::ARGS)
}

#[inline(always)]
fn header(kind: EventKind) -> EventHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    EventHeader {
        kind: kind as u32,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        _pad0: 0,
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

/// Reserves a record, writes `value` whole and submits it; counts a loss
/// when the ring buffer is full.
#[inline(always)]
fn emit<T: 'static>(tgid: u32, value: T) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(value);
            entry.submit(submit_flags());
        }
        None => record_loss(tgid),
    }
}

/// As [`emit`], for a record too large to build on the 512-byte BPF stack
/// ([`ExecEvent`]): `fill` must initialize every field in place.
#[inline(always)]
fn emit_in_place<T: 'static>(tgid: u32, fill: impl FnOnce(*mut T)) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            fill(entry.as_mut_ptr());
            entry.submit(submit_flags());
        }
        None => record_loss(tgid),
    }
}

// ---- memory syscalls -------------------------------------------------------

/// Attached to sys_enter of every memory syscall and of clone/clone3 (whose
/// flags the fork program reads): see `memmon_common::tracepoints::PROGRAMS`.
#[tracepoint]
pub fn sys_enter_memory(ctx: TracePointContext) -> u32 {
    let _ = try_sys_enter_memory(&ctx);
    0
}

fn try_sys_enter_memory(ctx: &TracePointContext) -> Result<(), i64> {
    let pending = PendingSyscall {
        nr: syscall_nr(ctx),
        _pad0: 0,
        // SAFETY: helper without preconditions.
        enter_ns: unsafe { bpf_ktime_get_ns() },
        args: syscall_args(ctx)?,
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    PENDING.insert(tid, pending, 0)?;
    Ok(())
}

/// Attached to sys_exit of the memory syscalls: emits one paired event.
#[tracepoint]
pub fn sys_exit_memory(ctx: TracePointContext) -> u32 {
    let _ = try_sys_exit_memory(&ctx);
    0
}

fn try_sys_exit_memory(ctx: &TracePointContext) -> Result<(), i64> {
    let nr = syscall_nr(ctx);
    let ret = syscall_ret(ctx);
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(pending) = PENDING.get_ptr(tid) else {
        unpaired_exit();
        return Ok(());
    };
    // SAFETY: pointer from the map; copied out at once.
    let pending = unsafe { *pending };
    let _ = PENDING.remove(tid);
    if pending.nr != nr {
        unpaired_exit();
        return Ok(());
    }
    let mut args = pending.args;
    if nr == layout().nr_io_setup && ret == 0 {
        args[IO_SETUP_RING_ARG] = unseen::io_setup_ring(args[1]);
    }
    let header = header(EventKind::Syscall);
    let exit_ns = header.ts_ns;
    emit(
        header.tgid,
        SyscallEvent {
            header,
            nr: pending.nr,
            _pad0: 0,
            args,
            ret,
            duration_ns: exit_ns.saturating_sub(pending.enter_ns),
        },
    );
    Ok(())
}

// ---- prctl(PR_SET_VMA_ANON_NAME) -------------------------------------------

#[tracepoint]
pub fn sys_enter_prctl(ctx: TracePointContext) -> u32 {
    let _ = try_sys_enter_prctl(&ctx);
    0
}

fn try_sys_enter_prctl(ctx: &TracePointContext) -> Result<(), i64> {
    let [option, sub, _, _, name_ptr, _] = syscall_args(ctx)?;
    if option != PR_SET_VMA || sub != PR_SET_VMA_ANON_NAME {
        return Ok(());
    }
    try_sys_enter_memory(ctx)?;
    let tid = bpf_get_current_pid_tgid() as u32;
    let mut name = [0u8; VMA_NAME_LEN];
    if name_ptr != 0 {
        // SAFETY: the helper bounds the copy by the buffer and faults safely.
        let _ = unsafe { bpf_probe_read_user_str_bytes(name_ptr as *const u8, &mut name) };
    }
    PENDING_NAME.insert(tid, name, 0)?;
    Ok(())
}

#[tracepoint]
pub fn sys_exit_prctl(ctx: TracePointContext) -> u32 {
    let _ = try_sys_exit_prctl(&ctx);
    0
}

fn try_sys_exit_prctl(ctx: &TracePointContext) -> Result<(), i64> {
    let layout = layout();
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(name) = PENDING_NAME.get_ptr(tid) else {
        return Ok(()); // not a PR_SET_VMA call
    };
    let Some(pending) = PENDING.get_ptr(tid) else {
        let _ = PENDING_NAME.remove(tid);
        unpaired_exit();
        return Ok(());
    };
    // SAFETY: pointers from the maps; copied out before removal.
    let (pending, name) = unsafe { (*pending, *name) };
    let _ = PENDING.remove(tid);
    let _ = PENDING_NAME.remove(tid);
    if pending.nr != layout.nr_prctl {
        unpaired_exit();
        return Ok(());
    }
    let ret = syscall_ret(ctx);
    let header = header(EventKind::VmaName);
    emit(
        header.tgid,
        VmaNameEvent {
            header,
            addr: pending.args[2],
            len: pending.args[3],
            ret,
            name,
        },
    );
    Ok(())
}

// ---- process lifetime -------------------------------------------------------

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_sched_process_exec(&ctx);
    0
}

fn try_sched_process_exec(ctx: &TracePointContext) -> Result<(), i64> {
    let layout = layout();
    let data_loc: u32 = field(ctx, layout.exec_filename)?;
    let old_tid: i32 = field(ctx, layout.exec_old_pid)?;
    // __data_loc: low 16 bits are the offset from the record start.
    let filename = (ctx.as_ptr() as usize + (data_loc & 0xffff) as usize) as *const u8;
    let header = header(EventKind::Exec);
    emit_in_place::<ExecEvent>(header.tgid, |event| {
        // SAFETY: `event` points at a reserved record; fields are written in
        // place (the filename is too large to build on the BPF stack).
        unsafe {
            addr_of_mut!((*event).header).write(header);
            addr_of_mut!((*event).old_tid).write(old_tid as u32);
            addr_of_mut!((*event)._pad0).write(0);
            let buf = &mut *addr_of_mut!((*event).filename);
            buf[0] = 0;
            let _ = bpf_probe_read_kernel_str_bytes(filename, buf);
        }
    });
    Ok(())
}

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let _ = try_sched_process_fork(&ctx);
    0
}

fn try_sched_process_fork(ctx: &TracePointContext) -> Result<(), i64> {
    let layout = layout();
    let child_tid: i32 = field(ctx, layout.fork_child_pid)?;
    let header = header(EventKind::Fork);
    // The fork tracepoint fires inside the parent's clone: its pending entry
    // says whether the child joins the parent's thread group.
    let mut clone_flags = 0u64;
    if let Some(pending) = PENDING.get_ptr(header.tid) {
        // SAFETY: pointer from the map, copied at once.
        let pending = unsafe { *pending };
        if pending.nr == layout.nr_clone {
            clone_flags = pending.args[0];
        } else if pending.nr == layout.nr_clone3 {
            // clone3 passes `struct clone_args *`; flags is its first u64.
            // SAFETY: the helper faults safely on a bad user pointer.
            clone_flags =
                unsafe { bpf_probe_read_user(pending.args[0] as *const u64) }.unwrap_or(0);
        }
    }
    let child_tgid = if clone_flags & CLONE_THREAD != 0 {
        header.tgid
    } else {
        child_tid as u32
    };
    // A process forked after its parent lost records starts from the
    // parent's model, which is already wrong: it is lost too.
    if child_tgid != header.tgid && LOST_PIDS.get_ptr(header.tgid).is_some() {
        mark_lost(child_tgid, 0);
    }
    emit(
        header.tgid,
        ForkEvent {
            header,
            child_tgid,
            child_tid: child_tid as u32,
            clone_flags,
        },
    );
    Ok(())
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_sched_process_exit(&ctx);
    0
}

fn try_sched_process_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let layout = layout();
    let header = header(EventKind::Exit);
    let _ = PENDING.remove(header.tid);
    let group_dead = if layout.exit_group_dead == TracepointLayout::ABSENT {
        // Older kernels: the best available guess is the leader's exit.
        (header.tid == header.tgid) as u8
    } else {
        let dead: u8 = field(ctx, layout.exit_group_dead)?;
        (dead != 0) as u8
    };
    emit(
        header.tgid,
        ExitEvent {
            header,
            group_dead,
            _pad0: [0; 7],
        },
    );
    Ok(())
}

/// Host builds (`cargo clippy --workspace`) only type-check this crate.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
