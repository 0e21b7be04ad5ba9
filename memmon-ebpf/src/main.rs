//! memmon's kernel programs.
//!
//! Memory syscalls are traced at their exit only: `sys_exit_*` reads the
//! result from its record and the original arguments from the registers the
//! thread saved on entry ([`user_regs`]), and emits ONE [`SyscallEvent`].
//! No enter program, no per-thread pairing map: half the program runs of
//! enter+exit pairing, no hash updates, and no pairing that can be lost
//! (a syscall in flight when the programs attach is still seen whole).
//! The same generic program serves every memory syscall (the syscall number
//! travels in the event) so that adding a syscall is an attach, not a new
//! program. Process lifetime comes from the `sched` tracepoints.
//!
//! Wakeups are batched: records are submitted with `BPF_RB_NO_WAKEUP` and a
//! wakeup is forced only once `WAKEUP_BYTES` are queued; userspace also polls
//! on a short timer. Per-event wakeups cost ~6x more per traced syscall.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod file_identity;
mod stacks;
mod unseen;

use core::ptr::{addr_of_mut, read_volatile};

use aya_ebpf::{
    EbpfContext,
    bindings::pt_regs,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
        bpf_probe_read_kernel_str_bytes, bpf_probe_read_user, bpf_probe_read_user_str_bytes,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::{btf_tracepoint, map, tracepoint},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, TracePointContext},
};
use aya_log_ebpf::debug;
use memmon_common::{
    CLONE_THREAD, EventHeader, EventKind, ExecEvent, ExitEvent, FileMmapEvent, ForkEvent,
    IO_SETUP_RING_ARG, MAP_ANONYMOUS, PR_SET_VMA, PR_SET_VMA_ANON_NAME, SyscallEvent,
    TracepointLayout, VMA_NAME_LEN, VmaNameEvent, counter, file_status, syscall_record,
};

/// Userspace sets the real size (`--ringbuf-size`) at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Loss and error counters, one slot per error path: see
/// `memmon_common::counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Thread groups that lost at least one record, or changed their layout
/// unseen (value: how many), so that userspace can resync exactly those
/// from /proc. Not LRU:
/// an evicted entry would be a silent gap; a full map is counted
/// (`LOST_PIDS_FULL`) and userspace then resyncs everything.
#[map]
static LOST_PIDS: HashMap<u32, u64> = HashMap::with_max_entries(8192, 0);

/// Queued bytes above which a submit wakes the consumer.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 256 * 1024;

/// 1 (the default): read each memory syscall's call site ([`call_site`]);
/// userspace sets 0 for `call_sites = false`.
#[unsafe(no_mangle)]
static CALL_SITES: u32 = 1;

/// Field offsets read from tracefs by userspace.
#[unsafe(no_mangle)]
static LAYOUT: TracepointLayout = TracepointLayout::DEFAULT;

#[inline(always)]
fn layout() -> TracepointLayout {
    // SAFETY: a plain read of a global that userspace patches before load;
    // volatile keeps the compiler from folding in the default.
    unsafe { read_volatile(&LAYOUT) }
}

/// Whether a switch global that userspace patches before load is on.
#[inline(always)]
fn switched_on(global: &u32) -> bool {
    // SAFETY: as for `layout`.
    unsafe { read_volatile(global) != 0 }
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

/// An error path of a program: counts it in its `COUNTERS` slot and logs
/// it at debug level (aya-log), which writes nothing unless userspace
/// runs at debug (`AYA_LOG_LEVEL`). Success paths never log.
#[inline(always)]
fn fail<C: EbpfContext>(ctx: &C, slot: u32, detail: impl Into<i64>) {
    bump(slot);
    let detail: i64 = detail.into();
    debug!(
        ctx,
        "kernel error in slot {} of memmon_common::counter (memmon_kernel_errors_total), detail {}",
        slot,
        detail
    );
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

/// A `kind` record of `tgid` found the ring buffer full.
#[inline(always)]
fn record_loss<C: EbpfContext>(ctx: &C, kind: EventKind, tgid: u32) {
    fail(ctx, counter::ringbuf_full(kind), tgid);
    mark_lost(tgid, 1);
}

/// The integer types the programs read from tracepoint records: valid for
/// any bit pattern, so a copy of any bytes is a value.
trait Plain: Copy {}
impl Plain for u8 {}
impl Plain for i32 {}
impl Plain for u32 {}
impl Plain for i64 {}
impl Plain for u64 {}

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

/// The user registers the current thread saved when it entered the kernel
/// (x86_64 `struct pt_regs`). At a syscall's exit they still hold its
/// original arguments (and `orig_rax` its number, `rsp` the user stack).
/// The verifier types the pointer from the helpers' BTF, so fields are read
/// with direct loads, not `bpf_probe_read_kernel` (603-643 ns vs 380 ns per
/// program run in the issue-9 spike).
#[inline(always)]
fn user_regs() -> *const pt_regs {
    // SAFETY: both helpers are callable from tracepoint programs (tracing
    // helpers, Linux 5.15+) and take no pointers from us.
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as *const pt_regs }
}

/// A syscall's six arguments, in the x86_64 calling convention (rdi, rsi,
/// rdx, r10, r8, r9), from [`user_regs`]. An `int` argument (mmap's fd)
/// comes as the full register: only its low 32 bits are the value.
#[inline(always)]
fn syscall_args(regs: *const pt_regs) -> [u64; 6] {
    // SAFETY: `regs` is the kernel's pointer from `user_regs`; the verifier
    // turns these loads into fault-safe BTF reads of pt_regs fields.
    unsafe {
        [
            (*regs).rdi,
            (*regs).rsi,
            (*regs).rdx,
            (*regs).r10,
            (*regs).r8,
            (*regs).r9,
        ]
    }
}

/// The call site of the current syscall: the word at the user stack
/// pointer. Glibc's syscall wrappers (mmap64, munmap, ...) are leaf
/// functions that `call` nothing, so `rsp` still points at the return
/// address their caller pushed. 0 (counted) when the stack page is not
/// readable.
#[inline(always)]
fn call_site(ctx: &TracePointContext, regs: *const pt_regs) -> u64 {
    // SAFETY: a BTF-typed load of a pt_regs field, as in `syscall_args`;
    // the user read goes through the helper, which faults safely.
    match unsafe { bpf_probe_read_user((*regs).rsp as *const u64) } {
        Ok(word) => word,
        Err(err) => {
            fail(ctx, counter::READ_CALL_SITE, err);
            0
        }
    }
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

/// Reserves a record, writes `value` (of `header`'s kind) whole and
/// submits it; counts a loss when the ring buffer is full.
#[inline(always)]
fn emit<C: EbpfContext, T: 'static>(ctx: &C, header: &EventHeader, value: T) {
    let (kind, tgid) = (header.kind, header.tgid);
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(value);
            entry.submit(submit_flags());
        }
        None => record_loss(ctx, kind_of(kind), tgid),
    }
}

/// The kind the programs wrote into a header (always valid).
#[inline(always)]
fn kind_of(raw: u32) -> EventKind {
    EventKind::from_u32(raw).unwrap_or(EventKind::Syscall)
}

/// As [`emit`], for a record too large to build on the 512-byte BPF stack
/// ([`ExecEvent`]): `fill` must initialize every field in place.
#[inline(always)]
fn emit_in_place<C: EbpfContext, T: 'static>(
    ctx: &C,
    kind: EventKind,
    tgid: u32,
    fill: impl FnOnce(*mut T),
) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            fill(entry.as_mut_ptr());
            entry.submit(submit_flags());
        }
        None => record_loss(ctx, kind, tgid),
    }
}

// ---- memory syscalls -------------------------------------------------------

/// Attached to sys_exit of every memory syscall (see
/// `memmon_common::tracepoints::PROGRAMS`): emits one complete event.
#[tracepoint]
pub fn sys_exit_memory(ctx: TracePointContext) -> u32 {
    try_sys_exit_memory(&ctx);
    0
}

fn try_sys_exit_memory(ctx: &TracePointContext) {
    let nr = syscall_nr(ctx);
    let ret = syscall_ret(ctx);
    let regs = user_regs();
    let mut args = syscall_args(regs);
    let call_site = if switched_on(&CALL_SITES) {
        call_site(ctx, regs)
    } else {
        0
    };
    let stack_id = stacks::capture(ctx);
    if is_file_mmap(nr, &args, ret) {
        emit_file_mmap(ctx, nr, &args, ret, call_site, stack_id);
        return;
    }
    if nr == layout().nr_io_setup && ret == 0 {
        args[IO_SETUP_RING_ARG] = unseen::io_setup_ring(ctx, args[1]);
    }
    let header = header(EventKind::Syscall);
    emit(
        ctx,
        &header,
        SyscallEvent {
            header,
            nr,
            _pad0: 0,
            args,
            ret,
            call_site,
            stack_id,
            _pad1: 0,
        },
    );
}

/// A successful mmap of a file: its fd is still open here.
#[inline(always)]
fn is_file_mmap(nr: u32, args: &[u64; 6], ret: i64) -> bool {
    let nr_mmap = file_identity::kernel_layout().nr_mmap;
    nr_mmap != 0 && nr == nr_mmap && !(-4095..0).contains(&ret) && args[3] & MAP_ANONYMOUS == 0
}

/// The syscall record with the file's identity and path
/// ([`file_identity`]); built in place, it is too large for the stack.
#[inline(always)]
fn emit_file_mmap(
    ctx: &TracePointContext,
    nr: u32,
    args: &[u64; 6],
    ret: i64,
    call_site: u64,
    stack_id: i32,
) {
    let header = header(EventKind::FileMmap);
    emit_in_place::<_, FileMmapEvent>(ctx, EventKind::FileMmap, header.tgid, |event| {
        // SAFETY: `event` points at a reserved record; `fill` writes every
        // field after `syscall`.
        unsafe {
            addr_of_mut!((*event).syscall).write(SyscallEvent {
                header,
                nr,
                _pad0: 0,
                args: *args,
                ret,
                call_site,
                stack_id,
                _pad1: 0,
            });
            // An `int` fd: only the register's low 32 bits are the value.
            file_identity::fill(event, args[4] as i32);
            if (*event).status & file_status::FOUND == 0 {
                fail(ctx, counter::READ_MAPPED_FILE, args[4] as i32 as i64);
            }
        }
    });
}

// ---- prctl(PR_SET_VMA_ANON_NAME) -------------------------------------------

/// Attached to sys_exit of prctl: every prctl runs it, so it returns at
/// once unless the saved registers say PR_SET_VMA_ANON_NAME.
#[tracepoint]
pub fn sys_exit_prctl(ctx: TracePointContext) -> u32 {
    try_sys_exit_prctl(&ctx);
    0
}

fn try_sys_exit_prctl(ctx: &TracePointContext) {
    let [option, sub, addr, len, name_ptr, _] = syscall_args(user_regs());
    if option != PR_SET_VMA || sub != PR_SET_VMA_ANON_NAME {
        return;
    }
    let header = header(EventKind::VmaName);
    emit_in_place::<_, VmaNameEvent>(ctx, EventKind::VmaName, header.tgid, |event| {
        // SAFETY: `event` points at a reserved record; every field is
        // written in place (the name does not fit the BPF stack twice).
        unsafe {
            addr_of_mut!((*event).header).write(header);
            addr_of_mut!((*event).addr).write(addr);
            addr_of_mut!((*event).len).write(len);
            addr_of_mut!((*event).ret).write(syscall_ret(ctx));
            let name = &mut *addr_of_mut!((*event).name);
            *name = [0; VMA_NAME_LEN];
            if name_ptr != 0 {
                // The kernel copied the same bytes during the call; the
                // helper bounds the copy by the buffer and faults safely.
                if let Err(err) = bpf_probe_read_user_str_bytes(name_ptr as *const u8, name) {
                    fail(ctx, counter::READ_VMA_NAME, err);
                }
            }
        }
    });
}

// ---- process lifetime -------------------------------------------------------

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    if let Err(err) = try_sched_process_exec(&ctx) {
        fail(&ctx, counter::READ_EXEC, err);
    }
    0
}

fn try_sched_process_exec(ctx: &TracePointContext) -> Result<(), i64> {
    let layout = layout();
    let data_loc: u32 = field(ctx, layout.exec_filename)?;
    let old_tid: i32 = field(ctx, layout.exec_old_pid)?;
    // __data_loc: low 16 bits are the offset from the record start.
    let filename = (ctx.as_ptr() as usize + (data_loc & 0xffff) as usize) as *const u8;
    let header = header(EventKind::Exec);
    emit_in_place::<_, ExecEvent>(ctx, EventKind::Exec, header.tgid, |event| {
        // SAFETY: `event` points at a reserved record; fields are written in
        // place (the filename is too large to build on the BPF stack).
        unsafe {
            addr_of_mut!((*event).header).write(header);
            addr_of_mut!((*event).old_tid).write(old_tid as u32);
            addr_of_mut!((*event)._pad0).write(0);
            let buf = &mut *addr_of_mut!((*event).filename);
            buf[0] = 0;
            if let Err(err) = bpf_probe_read_kernel_str_bytes(filename, buf) {
                fail(ctx, counter::READ_EXEC, err);
            }
        }
    });
    Ok(())
}

/// On tp_btf (the classic tracepoint carries only pids): the child's
/// thread group comes from its task, so a thread is told from a process
/// by the kernel, not by reading clone3's arguments back from user memory.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> u32 {
    let _ = try_sched_process_fork(&ctx);
    0
}

fn try_sched_process_fork(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let layout = layout();
    let child: *const u8 = ctx.arg(1);
    let header = header(EventKind::Fork);
    let Ok((child_tgid, child_tid)) = file_identity::task_ids(child as u64) else {
        // Not knowing the child's group is a gap: both sides resync.
        fail(ctx, counter::READ_FORK_CHILD, header.tgid);
        mark_lost(header.tgid, 1);
        return Ok(());
    };
    let thread = child_tgid == header.tgid;
    // clone's flags are a register value (shown, not trusted); clone3's
    // would be user memory and are not read.
    // The fork tracepoint fires inside the parent's clone: its saved
    // registers say which call it is.
    let regs = user_regs();
    // SAFETY: a BTF-typed load from the kernel's pt_regs, as in syscall_args.
    let nr = unsafe { (*regs).orig_rax };
    let mut clone_flags = 0u64;
    if nr == u64::from(layout.nr_clone) {
        clone_flags = syscall_args(regs)[0] & !CLONE_THREAD;
    }
    if thread {
        clone_flags |= CLONE_THREAD;
    }
    // A process forked after its parent lost records starts from the
    // parent's model, which is already wrong: it is lost too.
    if !thread && LOST_PIDS.get_ptr(header.tgid).is_some() {
        mark_lost(child_tgid, 0);
    }
    emit(
        ctx,
        &header,
        ForkEvent {
            header,
            child_tgid,
            child_tid,
            clone_flags,
        },
    );
    Ok(())
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    if let Err(err) = try_sched_process_exit(&ctx) {
        fail(&ctx, counter::READ_EXIT, err);
    }
    0
}

fn try_sched_process_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let layout = layout();
    let header = header(EventKind::Exit);
    let group_dead = if layout.exit_group_dead == TracepointLayout::ABSENT {
        // Older kernels: the best available guess is the leader's exit.
        (header.tid == header.tgid) as u8
    } else {
        let dead: u8 = field(ctx, layout.exit_group_dead)?;
        (dead != 0) as u8
    };
    emit(
        ctx,
        &header,
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
