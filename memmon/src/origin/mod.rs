//! Where each region came from: the event that created it, its call site,
//! and what last changed it, kept per byte range beside the model.
//!
//! The model merges neighbouring VMAs exactly as the kernel does, so a
//! region's origin cannot live on the region: two mmaps from different
//! call sites can become one VMA. [`OriginMap`] keeps each origin for its
//! own sub-range instead, and is updated by the same operations.

mod apply;
mod callsite;
mod map;
#[cfg(test)]
mod tests;
mod totals;

use std::sync::Arc;

use serde::Serialize;

pub use apply::{apply, keeps_origin};
pub use callsite::{CallSite, Interner};
pub use map::{OriginMap, Span};
pub use totals::{SiteKey, SiteTotals, Tally};

use crate::events::Syscall;

/// What made a range of memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    /// A traced syscall.
    Syscall(Syscall),
    /// It was already there when memmon first read the process from /proc
    /// (or after a resync, where events were missed): who made it is unknown.
    Seed,
}

impl Cause {
    pub fn name(self) -> &'static str {
        match self {
            Cause::Syscall(s) => s.name(),
            Cause::Seed => "seed",
        }
    }
}

impl Serialize for Cause {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One event, as far as origins care: shared (`Arc`) by every range it
/// created or changed, so splits copy a pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub cause: Cause,
    /// CLOCK_MONOTONIC ns of the event (of the snapshot, for [`Cause::Seed`]).
    pub ts_ns: u64,
    /// The thread that made the call (0 for [`Cause::Seed`]).
    pub tid: u32,
    /// The user return address into the libc wrapper's caller, normalized
    /// to file + offset when the event was applied.
    pub call_site: Option<CallSite>,
    /// The user stack in the kernel's stack map, when stacks are captured.
    pub stack_id: Option<u32>,
}

impl Origin {
    /// For ranges a snapshot showed: honest about not knowing.
    pub fn seed(ts_ns: u64) -> Arc<Origin> {
        Arc::new(Origin {
            cause: Cause::Seed,
            ts_ns,
            tid: 0,
            call_site: None,
            stack_id: None,
        })
    }
}
