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
        })
    }

    /// Waits for records and appends up to `max` decoded events to `batch`.
    /// Returns the number of records read (0 after an idle timer tick).
    pub async fn next_batch(
        &mut self,
        batch: &mut Vec<Event>,
        max: usize,
    ) -> Result<usize, BpfError> {
        let Self {
            ring,
            timer,
            decode_errors,
            decode_log,
        } = self;
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let n = Self::drain(guard.get_inner_mut(), batch, max, decode_errors, decode_log);
                if n < max {
                    guard.clear_ready();
                }
                Ok(n)
            }
            _ = timer.tick() => {
                Ok(Self::drain(ring.get_mut(), batch, max, decode_errors, decode_log))
            }
        }
    }

    /// Reads what is queued now, without waiting.
    pub fn drain_ready(&mut self, batch: &mut Vec<Event>, max: usize) -> usize {
        Self::drain(
            self.ring.get_mut(),
            batch,
            max,
            &mut self.decode_errors,
            &mut self.decode_log,
        )
    }

    fn drain(
        ring: &mut RingBuf<MapData>,
        batch: &mut Vec<Event>,
        max: usize,
        errors: &mut u64,
        log: &mut LogThrottle,
    ) -> usize {
        let mut n = 0;
        while n < max {
            let Some(item) = ring.next() else { break };
            n += 1;
            match decode(&item) {
                Ok(event) => batch.push(event),
                Err(err) => {
                    *errors += 1;
                    if let Some(held_back) = log.allow(Instant::now()) {
                        log::warn!(
                            "dropping an undecodable ring-buffer record: {err} ({held_back} more \
                             since the last warning, {errors} in all, counted by \
                             memmon_events_undecodable_total); the eBPF programs and the \
                             decoder disagree, which is a bug: please report it"
                        );
                    }
                }
            }
        }
        n
    }
}
