//! W^X transitions made while a process awaited its snapshot.
//!
//! Events older than the snapshot are not replayed on the model (it
//! already shows their effect), so the transitions they made would be
//! lost: a short-lived JIT, or a runtime that maps its code cache at
//! startup, does all of it before the snapshot of its exec lands. Those
//! events are run through detection on a scratch model made of them alone
//! (what they mapped themselves; memory mapped before them, such as the
//! exec'd image, is unknown there and yields nothing, never a false
//! transition). Call sites are normalized against the snapshot: the code
//! that called is almost always still mapped there.

use super::{ProcessState, convert::to_mem_op};
use crate::{
    events::Event,
    model::{AddressSpace, MemOp},
    origin::Interner,
    rules::wx_events::{detect, may_transition},
};

impl ProcessState {
    /// Records the transitions of the `pending` events the snapshot just
    /// installed already covers (call after [`ProcessState::install`]).
    pub(super) fn catch_up_wx(&mut self, pending: &[Event], interner: &mut Interner) {
        // Not sorted by time: CPUs' events interleave.
        let covered = pending.iter().filter(|e| e.meta.ts_ns < self.snapshot_ns);
        let ops: Vec<(&Event, MemOp)> = covered
            .filter_map(|e| to_mem_op(e).0.map(|op| (e, op)))
            .collect();
        if !ops.iter().any(|(_, op)| may_transition(op)) {
            return;
        }
        let mut scratch = AddressSpace::new();
        for (event, op) in &ops {
            let found = detect(op, &scratch);
            scratch.apply(op);
            if let Some(found) = found.filter(|f| !f.is_empty()) {
                let origin = Self::origin_of(event, &self.space, interner);
                self.wx.record(found, &origin);
            }
        }
    }
}
