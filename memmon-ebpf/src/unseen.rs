//! Layout changes the syscall tracepoints do not show, and effects their
//! events cannot carry.
//!
//! The `syscalls:*` tracepoints skip compat syscalls (32-bit processes, and
//! `int 0x80` from 64-bit ones), and memmon does not model every syscall
//! that changes a layout (map_shadow_stack, arch_prctl(ARCH_MAP_VDSO_*),
//! madvise and mlock splitting regions, ...). All of them take the mmap lock
//! for writing, so `mmap_lock_write` marks the process lost (a resync from
//! /proc) when the writer is inside a syscall whose native number is not in
//! `SEEN_SYSCALLS`. It costs one context load on every other lock
//! acquisition and nothing on syscalls that take no mmap lock.
//!
//! Compat numbers are read as native ones on purpose: every compat number
//! that collides with a seen native syscall belongs to a syscall that takes
//! no mmap write lock, or to execve/clone3, whose effect the sched
//! tracepoints cover (memmon's `bpf::unseen` tests check that table). That
//! keeps the test to two loads from the saved registers, with no kernel
//! struct offsets.

use core::ptr::read_volatile;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use memmon_common::{
    PR_SET_VMA, PR_SET_VMA_ANON_NAME, SEEN_SYSCALLS_WORDS, counter, mmap_lock_record,
};

use crate::{bump, fail, layout, mark_lost, record, syscall_args, user_regs};

/// What x86_64 syscall entry stores in `pt_regs.ax` until the syscall
/// returns.
const ENOSYS: u64 = -38i64 as u64;

/// Native syscall numbers whose layout changes are seen without this net;
/// userspace fills it from its syscall tables before load.
#[unsafe(no_mangle)]
static SEEN_SYSCALLS: [u64; SEEN_SYSCALLS_WORDS] = [0; SEEN_SYSCALLS_WORDS];

#[inline(always)]
fn seen(nr: u64) -> bool {
    let Some(word) = SEEN_SYSCALLS.get((nr / 64) as usize) else {
        return false;
    };
    // SAFETY: a plain read of a global that userspace patches before load;
    // volatile keeps the compiler from folding in the zeros.
    let word = unsafe { read_volatile(word) };
    word & (1 << (nr % 64)) != 0
}

/// Attached to `mmap_lock:mmap_lock_acquire_returned`.
#[tracepoint]
pub fn mmap_lock_write(ctx: TracePointContext) -> u32 {
    try_mmap_lock_write(&ctx);
    0
}

#[inline(always)]
fn try_mmap_lock_write(ctx: &TracePointContext) {
    // Readers (page faults, /proc readers) leave at the first load.
    if record::<u8, { mmap_lock_record::WRITE }>(ctx) == 0 {
        return;
    }
    let regs = user_regs();
    if regs.is_null() {
        return;
    }
    // SAFETY: BTF-typed loads from the kernel's pt_regs, as in syscall_args.
    let (ax, nr) = unsafe { ((*regs).rax, (*regs).orig_rax) };
    // Not inside a syscall: a fault expanding the stack, a kernel thread
    // (khugepaged), or an exiting task; none of these is a syscall's layout
    // change the daemon could have seen.
    if ax != ENOSYS {
        return;
    }
    if seen(nr) {
        return;
    }
    // prctl is traced only for PR_SET_VMA_ANON_NAME (sys_exit_prctl reads
    // the same registers); other options go through the net.
    if nr == layout().nr_prctl as u64 {
        let [option, sub, ..] = syscall_args(regs);
        if option == PR_SET_VMA && sub == PR_SET_VMA_ANON_NAME {
            return;
        }
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    bump(counter::UNSEEN_LAYOUT_CHANGE);
    mark_lost((pid_tgid >> 32) as u32, 1);
}

/// The ring address io_setup stored at `ctxp` (0, counted, if unreadable).
#[inline(always)]
pub fn io_setup_ring(ctx: &TracePointContext, ctxp: u64) -> u64 {
    // SAFETY: the helper faults safely on a bad user pointer.
    match unsafe { bpf_probe_read_user(ctxp as *const u64) } {
        Ok(ring) => ring,
        Err(err) => {
            fail(ctx, counter::READ_IO_SETUP_RING, err);
            0
        }
    }
}
