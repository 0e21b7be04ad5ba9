//! Full user stacks, behind the `STACKS` switch (off by default): the
//! memory-syscall exit program stores the calling thread's user stack in
//! `STACK_TRACES` and puts its id in the event. The kernel walks the
//! stack by frame pointers, so code built without them yields a short
//! stack (the call site in the event does not depend on them).

use aya_ebpf::{
    bindings::BPF_F_USER_STACK, macros::map, maps::StackTrace, programs::TracePointContext,
    programs::tracing::StackIdContext,
};
use memmon_common::{NO_STACK, STACK_MAP_ENTRIES, counter};

use crate::{fail, switched_on};

/// 1: capture user stacks; userspace sets it for `stacks = true`.
#[unsafe(no_mangle)]
static STACKS: u32 = 0;

/// Stacks by id. Without `BPF_F_REUSE_STACKID` a stack whose bucket holds
/// another one is refused (counted), so an id kept by an old region goes
/// on naming the stack it was given for.
#[map]
static STACK_TRACES: StackTrace = StackTrace::with_max_entries(STACK_MAP_ENTRIES, 0);

/// The kernel's errno values `bpf_get_stackid` returns.
const ENOMEM: i32 = 12;
const EEXIST: i32 = 17;

/// The current user stack's id, or [`NO_STACK`] when stacks are off or
/// the capture failed (counted by reason).
#[inline(always)]
pub fn capture(ctx: &TracePointContext) -> i32 {
    if !switched_on(&STACKS) {
        return NO_STACK;
    }
    match ctx.get_stackid(&STACK_TRACES, BPF_F_USER_STACK as u64) {
        Ok(id) => id as i32,
        Err(err) => {
            let slot = match -err {
                ENOMEM => counter::STACK_MAP_FULL,
                EEXIST => counter::STACK_COLLISION,
                _ => counter::STACK_OTHER,
            };
            fail(ctx, slot, err);
            NO_STACK
        }
    }
}
