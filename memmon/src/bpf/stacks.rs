//! The user stacks the kernel programs captured (`stacks = true`): a
//! handle on their `STACK_TRACES` map that worker threads can share. The
//! events carry only a stack's id; the frames are looked up when someone
//! asks, never on the event path.

use std::sync::{Arc, Mutex, PoisonError};

use aya::maps::{MapData, StackTraceMap};

/// Shared handle on the kernel's stack map; clones look at the same map.
#[derive(Clone)]
pub struct StackTable {
    map: Arc<Mutex<StackTraceMap<MapData>>>,
}

impl std::fmt::Debug for StackTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StackTable")
    }
}

impl StackTable {
    pub(super) fn new(map: StackTraceMap<MapData>) -> Self {
        Self {
            map: Arc::new(Mutex::new(map)),
        }
    }

    /// The user addresses of stack `id`, innermost first; None when the
    /// map has no such stack. The first is the syscall instruction's (in
    /// the libc wrapper), then return addresses by frame pointers. A leaf
    /// wrapper sets up no frame, so the walk skips its caller: that return
    /// address is the event's call site, which belongs between the first
    /// two frames.
    pub fn frames(&self, id: u32) -> Option<Vec<u64>> {
        // A lookup cannot leave the map half-changed: a poisoned lock is fine.
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let trace = map.get(&id, 0).ok()?;
        Some(trace.frames().iter().map(|frame| frame.ip).collect())
    }

    /// Frees stack `id` in the kernel's map once nothing refers to it any
    /// more (the map is bounded: a full one refuses new stacks).
    pub fn forget(&self, id: u32) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = map.remove(&id);
    }
}
