//! A process's recent W^X transitions, bounded, and its counts of all.

use std::{collections::VecDeque, sync::Arc};

use super::{Transitions, WxKind, WxTransition};
use crate::origin::Origin;

/// Transitions kept per process; older ones are dropped (the counts keep
/// them). A JIT flips the same pages back and forth, so recent is what
/// matters.
pub const WX_LOG_CAPACITY: usize = 128;

/// Transitions of each [`WxKind`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WxCounts([u64; WxKind::ALL.len()]);

impl WxCounts {
    pub fn record(&mut self, kind: WxKind) {
        self.0[kind.index()] += 1;
    }

    pub fn add(&mut self, other: &WxCounts) {
        for (total, more) in self.0.iter_mut().zip(other.0) {
            *total += more;
        }
    }

    pub fn get(&self, kind: WxKind) -> u64 {
        self.0[kind.index()]
    }

    pub fn any(&self) -> bool {
        self.0.iter().any(|&n| n > 0)
    }

    /// The kinds counted at least once.
    pub fn counted(&self) -> impl Iterator<Item = (WxKind, u64)> + '_ {
        WxKind::ALL.into_iter().zip(self.0).filter(|(_, n)| *n > 0)
    }
}

/// One transition, with the event that made it (call site, thread, time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WxEvent {
    pub transition: WxTransition,
    pub origin: Arc<Origin>,
}

/// Cloned into every published view: the events are shared (`Arc`), and
/// copied only when one is recorded while a view still holds them.
#[derive(Clone, Debug, Default)]
pub struct WxLog {
    events: Arc<VecDeque<WxEvent>>,
    counts: WxCounts,
}

impl WxLog {
    /// Keeps what one operation did.
    pub fn record(&mut self, found: Transitions, origin: &Arc<Origin>) {
        if found.is_empty() {
            return;
        }
        let events = Arc::make_mut(&mut self.events);
        for transition in found.0.into_iter().flatten() {
            self.counts.record(transition.kind);
            if events.len() >= WX_LOG_CAPACITY {
                events.pop_front();
            }
            events.push_back(WxEvent {
                transition,
                origin: Arc::clone(origin),
            });
        }
    }

    /// Oldest first.
    pub fn events(&self) -> impl ExactSizeIterator<Item = &WxEvent> {
        self.events.iter()
    }

    /// Every transition since the process was first seen, kept or not.
    pub fn counts(&self) -> &WxCounts {
        &self.counts
    }

    /// Forgets the events (another process now has the pid), keeping the
    /// counts: counters never go back.
    pub fn clear_events(&mut self) {
        self.events = Arc::default();
    }
}
