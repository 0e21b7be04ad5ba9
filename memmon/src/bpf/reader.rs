//! Async consumer of the ring buffer: wakes on the kernel's batched
//! wakeups or on a short poll timer, whichever comes first.

use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    time::{Interval, MissedTickBehavior, interval},
};

use super::BpfError;
use crate::{
    events::{Event, decode},
    throttle::LogThrottle,
};

/// Records below the kernel's wakeup threshold wait at most this long.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

pub struct EventStream {
    ring: AsyncFd<RingBuf<MapData>>,
    timer: Interval,
    /// Records that failed to decode (never silently: counted and shown).
    pub decode_errors: u64,
    /// A mismatch makes every record undecodable: warn once in a while.
    decode_log: LogThrottle,
    /// The last drain stopped at its limit: records are still queued.
    backlog: bool,
    /// See [`EventStream::take_ring_wait_max`].
    ring_wait_max_ns: u64,
}

/// At most one warning about undecodable records per this period.
const DECODE_WARNING_PERIOD: Duration = Duration::from_secs(10);

impl EventStream {
    pub(super) fn new(ring: RingBuf<MapData>) -> Result<Self, BpfError> {
        // SAFETY: the RingBuf owns its map fd and keeps it open (and never
        // replaces it) for as long as the AsyncFd owns the RingBuf.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| BpfError::Io(e.into()))?;
        let mut timer = interval(POLL_INTERVAL);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Self {
            ring,
            timer,
            decode_errors: 0,
            decode_log: LogThrottle::new(DECODE_WARNING_PERIOD),
            backlog: false,
            ring_wait_max_ns: 0,
        })
    }

    /// Waits until records may be queued: the kernel's wakeup, the poll
    /// timer, or a drain that stopped at its limit.
    pub async fn wait(&mut self) -> Result<(), BpfError> {
        if std::mem::take(&mut self.backlog) {
            return Ok(());
        }
        let Self { ring, timer, .. } = self;
        tokio::select! {
            guard = ring.readable_mut() => {
                // Cleared before the drain that follows: a wakeup during
                // it sets readiness again, so none is missed.
                guard?.clear_ready();
            }
            _ = timer.tick() => {}
        }
        Ok(())
    }

    /// Waits for records and appends up to `max` decoded events to `batch`.
    /// Returns the number of records read (0 after an idle timer tick).
    pub async fn next_batch(
        &mut self,
        batch: &mut Vec<Event>,
        max: usize,
    ) -> Result<usize, BpfError> {
        self.wait().await?;
        Ok(self.drain_ready(batch, max))
    }

    /// Reads what is queued now, without waiting.
    pub fn drain_ready(&mut self, batch: &mut Vec<Event>, max: usize) -> usize {
        self.drain(max, |event| batch.push(event))
    }

    /// The longest a record waited in the ring before a drain read it,
    /// since the last call (kernel timestamp to the drain's start).
    pub fn take_ring_wait_max(&mut self) -> Duration {
        Duration::from_nanos(std::mem::take(&mut self.ring_wait_max_ns))
    }

    /// Decodes up to `max` queued records, handing each event to `apply`
    /// as it is decoded (no buffer in between). Returns the number read.
    pub fn drain(&mut self, max: usize, mut apply: impl FnMut(Event)) -> usize {
        let started_ns = crate::seed::monotonic_ns();
        let mut oldest_ns = u64::MAX;
        let ring = self.ring.get_mut();
        let mut n = 0;
        while n < max {
            let Some(item) = ring.next() else { break };
            n += 1;
            match decode(&item) {
                Ok(event) => {
                    // The kernel stamps records with CLOCK_MONOTONIC too.
                    oldest_ns = oldest_ns.min(event.meta.ts_ns);
                    drop(item);
                    apply(event);
                }
                Err(err) => {
                    self.decode_errors += 1;
                    if let Some(held_back) = self.decode_log.allow(Instant::now()) {
                        log::warn!(
                            "dropping an undecodable ring-buffer record: {err} ({held_back} more \
                             since the last warning, {} in all, counted by \
                             memmon_events_undecodable_total); the eBPF programs and the \
                             decoder disagree, which is a bug: please report it",
                            self.decode_errors
                        );
                    }
                }
            }
        }
        self.backlog = n == max;
        self.ring_wait_max_ns = self
            .ring_wait_max_ns
            .max(started_ns.saturating_sub(oldest_ns));
        n
    }
}
