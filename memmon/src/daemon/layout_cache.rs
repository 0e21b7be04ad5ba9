//! Encoded `query` replies per model version: a large process's layout
//! takes milliseconds to classify and encode, and clients (`--watch`,
//! dashboards, scripts) ask again and again while nothing changed.
//!
//! An entry serves only the same process (pid and start time), model
//! version, name and ASLR setting, and for at most [`MAX_AGE`]: the
//! heuristics that read the process's memory and threads' stack pointers
//! can change without an event. Layouts with notes (a file or the memory
//! could not be read) are not kept, so a timeout is retried. The cache is
//! bounded in bytes. Each form of the reply (the layout, or rendered as
//! the client asked) is its own entry. An entry asked for past
//! [`REFRESH_AFTER`] is rebuilt in the background, so that a process
//! queried again and again does not make every Nth client wait for the
//! rebuild (a 20,000-region layout takes tens of ms).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{protocol::Render, report::Layout, rules::RandomizeVaSpace, tracker::ProcessView};

/// How long an entry serves.
pub(super) const MAX_AGE: Duration = Duration::from_secs(1);
/// An entry this old that is asked for again is rebuilt in the background
/// (once), so that its next reader finds a fresh one.
const REFRESH_AFTER: Duration = Duration::from_millis(500);
/// Bytes of encoded replies kept (a 20,000-region layout is about 5 MB).
const BUDGET: usize = 16 << 20;

/// What a reply depends on besides the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Key {
    pid: u32,
    start_time_ticks: Option<u64>,
    version: u64,
    comm: String,
    exe: Option<String>,
    randomize_va_space: RandomizeVaSpace,
    /// The reply's form: the layout, or rendered as the client asked.
    render: Option<Render>,
}

impl Key {
    pub(super) fn of(
        view: &ProcessView,
        randomize_va_space: &RandomizeVaSpace,
        render: Option<Render>,
    ) -> Self {
        Self {
            render,
            pid: view.pid,
            start_time_ticks: view.start_time_ticks,
            version: view.applied_events,
            comm: view.comm.clone(),
            exe: view.exe.clone(),
            randomize_va_space: randomize_va_space.clone(),
        }
    }
}

/// Whether `layout` may be served again: nothing in it was unreadable.
pub(super) fn reusable(layout: &Layout) -> bool {
    layout.notes.is_empty() && layout.regions.iter().all(|r| r.note.is_none())
}

#[derive(Default)]
pub(super) struct LayoutCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Oldest first.
    entries: VecDeque<Entry>,
    bytes: usize,
}

struct Entry {
    key: Key,
    at: Instant,
    frame: Arc<Vec<u8>>,
    /// A rebuild was asked for (see [`Hit::refresh`]).
    refreshing: bool,
}

/// A cached reply, and whether the caller should rebuild it: it is past
/// [`REFRESH_AFTER`] and no one else was told to.
pub(super) struct Hit {
    pub frame: Arc<Vec<u8>>,
    pub refresh: bool,
}

impl LayoutCache {
    pub(super) fn get(&self, key: &Key) -> Option<Hit> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entry = inner
            .entries
            .iter_mut()
            .find(|e| e.key == *key && e.at.elapsed() < MAX_AGE)?;
        let refresh = !entry.refreshing && entry.at.elapsed() >= REFRESH_AFTER;
        entry.refreshing |= refresh;
        Some(Hit {
            frame: Arc::clone(&entry.frame),
            refresh,
        })
    }

    /// Keeps `frame` for `key`, replacing what the process had in that
    /// form and evicting the oldest entries past the budget.
    pub(super) fn insert(&self, key: Key, frame: Arc<Vec<u8>>) {
        if frame.len() > BUDGET / 2 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Inner { entries, bytes } = &mut *inner;
        entries.retain(|e| {
            let keep = (e.key.pid, e.key.render) != (key.pid, key.render);
            if !keep {
                *bytes -= e.frame.len();
            }
            keep
        });
        *bytes += frame.len();
        entries.push_back(Entry {
            key,
            at: Instant::now(),
            frame,
            refreshing: false,
        });
        while *bytes > BUDGET
            && let Some(old) = entries.pop_front()
        {
            *bytes -= old.frame.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pid: u32, version: u64) -> Key {
        Key {
            pid,
            start_time_ticks: Some(7),
            version,
            comm: "x".into(),
            exe: None,
            randomize_va_space: RandomizeVaSpace::Value(2),
            render: None,
        }
    }

    #[test]
    fn an_entry_serves_only_its_version_and_one_per_process_is_kept() {
        let cache = LayoutCache::default();
        cache.insert(key(1, 10), Arc::new(vec![1]));
        assert_eq!(
            cache.get(&key(1, 10)).map(|h| h.frame).as_deref(),
            Some(&vec![1])
        );
        assert!(cache.get(&key(1, 11)).is_none());
        assert!(cache.get(&key(2, 10)).is_none());
        cache.insert(key(1, 11), Arc::new(vec![2]));
        assert!(cache.get(&key(1, 10)).is_none());
        assert_eq!(cache.inner.lock().unwrap().bytes, 1);
    }

    #[test]
    fn each_form_is_kept_beside_the_others() {
        let cache = LayoutCache::default();
        let text = |version| Key {
            render: Some(Render::Text),
            ..key(1, version)
        };
        cache.insert(key(1, 10), Arc::new(vec![1]));
        cache.insert(text(10), Arc::new(vec![2]));
        assert_eq!(
            cache.get(&key(1, 10)).map(|h| h.frame).as_deref(),
            Some(&vec![1])
        );
        assert_eq!(
            cache.get(&text(10)).map(|h| h.frame).as_deref(),
            Some(&vec![2])
        );
        cache.insert(text(11), Arc::new(vec![3]));
        assert!(cache.get(&text(10)).is_none());
        assert_eq!(
            cache.get(&key(1, 10)).map(|h| h.frame).as_deref(),
            Some(&vec![1])
        );
    }

    #[test]
    fn an_aging_entry_asks_one_reader_for_a_rebuild() {
        let cache = LayoutCache::default();
        cache.insert(key(1, 10), Arc::new(vec![1]));
        assert!(!cache.get(&key(1, 10)).unwrap().refresh, "fresh");
        cache.inner.lock().unwrap().entries[0].at -= REFRESH_AFTER;
        let first = cache.get(&key(1, 10)).unwrap();
        assert!(first.refresh && *first.frame == vec![1], "still served");
        assert!(!cache.get(&key(1, 10)).unwrap().refresh, "asked once");
        cache.insert(key(1, 10), Arc::new(vec![2]));
        let rebuilt = cache.get(&key(1, 10)).unwrap();
        assert!(!rebuilt.refresh && *rebuilt.frame == vec![2]);
        cache.inner.lock().unwrap().entries[0].at -= MAX_AGE;
        assert!(cache.get(&key(1, 10)).is_none(), "expired");
    }

    #[test]
    fn the_budget_evicts_the_oldest() {
        let cache = LayoutCache::default();
        let big = || Arc::new(vec![0u8; BUDGET / 2]);
        cache.insert(key(1, 1), big());
        cache.insert(key(2, 1), big());
        cache.insert(key(3, 1), big());
        assert!(cache.get(&key(1, 1)).is_none());
        assert!(cache.get(&key(2, 1)).is_some() && cache.get(&key(3, 1)).is_some());
        let inner = cache.inner.lock().unwrap();
        assert!(inner.bytes <= BUDGET, "{}", inner.bytes);
    }
}
