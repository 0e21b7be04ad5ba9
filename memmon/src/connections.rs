//! Bounds on the connections any local user can open to the daemon: a
//! cap per peer (uid) and in total, and what happens at the cap.
//!
//! At a cap the oldest *idle* connection (one that has not sent a complete
//! request, or sits between requests) is closed to make room, and only
//! when every connection is busy is the new one refused. So idle or
//! half-sent connections, however many, cannot lock out a scraper or a
//! query: they cost a file descriptor each until the read timeout or until
//! newer peers need their slot. Both the query socket and /metrics use it.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use tokio::sync::Notify;

/// How many connections may be open at once.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub total: usize,
    /// For a peer's key (its uid on the query socket).
    pub per_key: fn(u32) -> usize,
}

/// What happened to one endpoint's connections, exported as metrics.
#[derive(Debug, Default)]
pub struct Counters {
    open: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
    timeouts: AtomicU64,
}

/// One endpoint's [`Counters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    pub open: u64,
    /// Closed at once: at a cap, with no idle connection to close instead.
    pub refused: u64,
    /// Idle connections closed to make room for a new one.
    pub evicted: u64,
    /// Closed for sending nothing, or too slowly, or not reading a reply.
    pub timeouts: u64,
}

impl Counters {
    pub const fn new() -> Self {
        Self {
            open: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    pub fn timed_out(&self) {
        self.timeouts.fetch_add(1, Relaxed);
    }

    pub fn stats(&self) -> EndpointStats {
        EndpointStats {
            open: self.open.load(Relaxed),
            refused: self.refused.load(Relaxed),
            evicted: self.evicted.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
        }
    }
}

/// The /metrics endpoint's counters (process-wide, like the endpoint).
pub static METRICS_ENDPOINT: Counters = Counters::new();
/// The query socket's counters.
pub static QUERY_SOCKET: Counters = Counters::new();
/// Query replies larger than the protocol allows, answered `too_large`.
pub static REPLIES_TOO_LARGE: AtomicU64 = AtomicU64::new(0);

/// Everything the connection bounds counted, for a scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// The /metrics endpoint.
    pub metrics: EndpointStats,
    /// The query socket.
    pub socket: EndpointStats,
    pub replies_too_large: u64,
}

impl ConnectionStats {
    /// By the `endpoint` label the metrics carry.
    pub fn by_endpoint(&self) -> [(&'static str, EndpointStats); 2] {
        [("metrics", self.metrics), ("socket", self.socket)]
    }
}

/// The counters of this process's endpoints now.
pub fn stats() -> ConnectionStats {
    ConnectionStats {
        metrics: METRICS_ENDPOINT.stats(),
        socket: QUERY_SOCKET.stats(),
        replies_too_large: REPLIES_TOO_LARGE.load(Relaxed),
    }
}

struct Entry {
    key: u32,
    busy: bool,
    evict: Arc<Notify>,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    /// By id, so oldest first.
    entries: BTreeMap<u64, Entry>,
    per_key: HashMap<u32, usize>,
}

impl Open {
    fn forget(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        if let Some(n) = self.per_key.get_mut(&entry.key) {
            *n -= 1;
            if *n == 0 {
                self.per_key.remove(&entry.key);
            }
        }
        Some(entry)
    }

    /// Closes the oldest idle connection `eligible` accepts; false if none.
    fn evict_oldest_idle(&mut self, eligible: impl Fn(&Entry) -> bool) -> bool {
        let Some(id) = self
            .entries
            .iter()
            .find(|(_, e)| !e.busy && eligible(e))
            .map(|(id, _)| *id)
        else {
            return false;
        };
        let entry = self.forget(id).expect("found above");
        // A stored permit: the connection's task sees it even if it is not
        // waiting on it right now.
        entry.evict.notify_one();
        true
    }
}

/// The open connections of one endpoint.
pub struct Slots {
    limits: Limits,
    counters: &'static Counters,
    open: Mutex<Open>,
}

impl Slots {
    pub fn new(limits: Limits, counters: &'static Counters) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counters,
            open: Mutex::new(Open::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        // Nothing panics while holding it; a poisoned map is still consistent.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection from `key`, closing the oldest idle
    /// connection at a full cap; `None` (counted) when all are busy.
    pub fn admit(self: &Arc<Self>, key: u32) -> Option<Slot> {
        let mut open = self.lock();
        let before = open.entries.len();
        let key_full = open.per_key.get(&key).copied().unwrap_or(0) >= (self.limits.per_key)(key);
        let room = (!key_full || open.evict_oldest_idle(|e| e.key == key))
            && (open.entries.len() < self.limits.total || open.evict_oldest_idle(|_| true));
        let evicted = (before - open.entries.len()) as u64;
        self.counters.evicted.fetch_add(evicted, Relaxed);
        self.counters.open.fetch_sub(evicted, Relaxed);
        if !room {
            self.counters.refused.fetch_add(1, Relaxed);
            return None;
        }
        let id = open.next_id;
        open.next_id += 1;
        let evict = Arc::new(Notify::new());
        open.entries.insert(
            id,
            Entry {
                key,
                busy: false,
                evict: evict.clone(),
            },
        );
        *open.per_key.entry(key).or_default() += 1;
        self.counters.open.fetch_add(1, Relaxed);
        Some(Slot {
            slots: self.clone(),
            id,
            evict,
        })
    }

    pub fn counters(&self) -> &'static Counters {
        self.counters
    }
}

/// One admitted connection; dropping it frees the slot.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    evict: Arc<Notify>,
}

impl Slot {
    /// Marks the connection busy (serving a request, not to be evicted)
    /// until the guard is dropped.
    pub fn busy(&self) -> Busy<'_> {
        self.set_busy(true);
        Busy(self)
    }

    fn set_busy(&self, busy: bool) {
        if let Some(entry) = self.slots.lock().entries.get_mut(&self.id) {
            entry.busy = busy;
        }
    }

    /// Resolves once the connection was closed to make room: its task
    /// should then drop it.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    pub fn counters(&self) -> &'static Counters {
        self.slots.counters
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.slots.lock().forget(self.id).is_some() {
            self.slots.counters.open.fetch_sub(1, Relaxed);
        }
    }
}

/// See [`Slot::busy`].
pub struct Busy<'a>(&'a Slot);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.set_busy(false);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn slots(counters: &'static Counters) -> Arc<Slots> {
        let per_key = |uid| if uid == 0 { 3 } else { 2 };
        Slots::new(Limits { total: 4, per_key }, counters)
    }

    #[test]
    fn a_peer_at_its_cap_loses_its_oldest_idle_connection_not_its_busy_ones() {
        static C: Counters = Counters::new();
        let s = slots(&C);
        let first = s.admit(1000).expect("room");
        let second = s.admit(1000).expect("room");
        let _busy = first.busy();
        let third = s.admit(1000).expect("the idle second makes room");
        assert_eq!(C.stats().evicted, 1);
        assert_eq!(C.stats().open, 2);
        let evicted = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(1), second.evicted()).await
            });
        assert!(evicted.is_ok(), "the evicted connection is told");
        let _busy3 = third.busy();
        assert!(s.admit(1000).is_none(), "both busy: refused");
        assert_eq!(C.stats().refused, 1);
        // Another user is not affected by the first one's cap.
        assert!(s.admit(1001).is_some());
        drop(second);
        assert_eq!(
            C.stats().open,
            2,
            "dropping an evicted slot frees nothing twice"
        );
    }

    #[test]
    fn at_the_total_cap_the_oldest_idle_of_anyone_makes_room() {
        static C: Counters = Counters::new();
        let s = slots(&C);
        let a = s.admit(1).expect("room");
        let b = s.admit(2).expect("room");
        let c = s.admit(0).expect("room");
        let d = s.admit(0).expect("room");
        let busy_a = a.busy();
        let (_c, _d) = (c.busy(), d.busy());
        let e = s.admit(0).expect("b, idle, makes room");
        assert_eq!((C.stats().open, C.stats().evicted), (4, 1));
        let _e = e.busy();
        assert!(s.admit(3).is_none(), "all four busy");
        drop(busy_a);
        drop(a);
        assert!(s.admit(3).is_some(), "a closed connection frees its slot");
        drop(b);
        assert_eq!(C.stats().refused, 1);
    }

    #[test]
    fn freed_slots_are_reused_and_counted_open() {
        static C: Counters = Counters::new();
        let s = slots(&C);
        for _ in 0..100 {
            let held: Vec<Slot> = (0..3).map(|_| s.admit(0).expect("room")).collect();
            assert_eq!(C.stats().open, 3);
            drop(held);
        }
        assert_eq!(C.stats(), EndpointStats::default());
    }
}
