//! Keeping repeated failures from flooding the log or spinning a core:
//! a log throttle, an exponential back-off, and the accept loop that uses
//! both (the query socket and the /metrics endpoint share it).

use std::{
    future::Future,
    io,
    time::{Duration, Instant},
};

/// Lets one message through per `period`, counting the ones held back.
#[derive(Debug)]
pub struct LogThrottle {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    pub const fn new(period: Duration) -> Self {
        Self {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether to log an occurrence at `now`: `Some(n)` with the `n`
    /// occurrences held back since the last one logged, else `None`.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.period)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Delays that start at `first` and double up to `max`, until reset.
#[derive(Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The delay to wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// After a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// First wait after a failed accept, and the longest.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Accepts connections forever, handing each to `serve`. A failed accept
/// (EMFILE, ENFILE, ENOBUFS: the next one would fail too) waits 10 ms,
/// doubling to 1 s until one succeeds, and is logged at most once a second.
pub async fn accept_loop<S, F>(
    what: &str,
    mut accept: impl FnMut() -> F,
    mut serve: impl FnMut(S),
) -> !
where
    F: Future<Output = io::Result<S>>,
{
    let mut backoff = Backoff::new(ACCEPT_BACKOFF.0, ACCEPT_BACKOFF.1);
    let mut log = LogThrottle::new(ACCEPT_BACKOFF.1);
    loop {
        match accept().await {
            Ok(conn) => {
                backoff.reset();
                serve(conn);
            }
            Err(err) => {
                let delay = backoff.next_delay();
                if let Some(held_back) = log.allow(Instant::now()) {
                    log::warn!(
                        "{what}: cannot accept a connection: {err} ({held_back} more failures \
                         since the last report); retrying in {delay:?} (raise the open-files limit \
                         if this is EMFILE)"
                    );
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        let ms: Vec<u128> = (0..10).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(10));
        assert_eq!(b.next_delay(), Duration::from_millis(20));
    }

    #[test]
    fn throttle_lets_one_through_per_period_and_counts_the_rest() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut log = LogThrottle::new(Duration::from_secs(1));
        assert_eq!(log.allow(at(0)), Some(0), "the first is logged");
        assert_eq!(log.allow(at(1)), None);
        assert_eq!(log.allow(at(999)), None);
        assert_eq!(
            log.allow(at(1000)),
            Some(2),
            "then one a period, with a count"
        );
        assert_eq!(log.allow(at(1500)), None);
        assert_eq!(log.allow(at(5000)), Some(1));
        assert_eq!(log.allow(at(6000)), Some(0));
    }

    #[tokio::test]
    async fn failing_accepts_back_off_instead_of_spinning() {
        use std::{cell::Cell, rc::Rc};
        let tries = Rc::new(Cell::new(0u32));
        let counted = tries.clone();
        let looping = accept_loop(
            "test",
            move || {
                counted.set(counted.get() + 1);
                std::future::ready(Err::<(), _>(io::Error::from_raw_os_error(libc::EMFILE)))
            },
            |()| {},
        );
        // Tries at 0, 10, 30, 70, 150 and 310 ms, the next at 630: six at
        // most (fewer on a slow machine); a loop that spun would make millions.
        let _ = tokio::time::timeout(Duration::from_millis(450), looping).await;
        assert!((3..=6).contains(&tries.get()), "{} accepts", tries.get());
    }
}
