//! Bytes outstanding per call site, exact because they follow the origin
//! map (partial munmaps, MAP_FIXED overlays and moves included), with a
//! short per-second series for growth over a window.

use std::{
    collections::{HashMap, VecDeque},
    hash::{Hash, Hasher},
    sync::Arc,
};

use super::{Cause, Origin};

/// Who made memory, as a key: the cause and the normalized call site.
/// Objects are interned (see [`super::Interner`]), so the key compares and
/// hashes the object by pointer: hashing its path on every event cost
/// more than the rest of the update.
#[derive(Clone, Debug)]
pub struct SiteKey {
    pub cause: Cause,
    pub object: Option<Arc<str>>,
    /// File offset in `object`, or the address when there is no object
    /// (0 when no call site was captured).
    pub offset: u64,
}

impl PartialEq for SiteKey {
    fn eq(&self, other: &Self) -> bool {
        self.is(other.cause, other.object.as_ref(), other.offset)
    }
}

impl Eq for SiteKey {}

impl Hash for SiteKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Each field whole: the offset is the process's to choose, so no
        // two keys may reach the (seeded) hasher as the same words.
        let cause = match self.cause {
            Cause::Syscall(s) => s as u8 + 1,
            Cause::Seed => 0,
        };
        let object = self
            .object
            .as_ref()
            .map_or(0, |o| Arc::as_ptr(o).cast::<u8>() as u64);
        state.write_u64(object);
        state.write_u64(self.offset);
        state.write_u8(cause);
    }
}

impl SiteKey {
    /// Whether this key has these fields, comparing objects by pointer.
    fn is(&self, cause: Cause, object: Option<&Arc<str>>, offset: u64) -> bool {
        self.cause == cause
            && self.offset == offset
            && match (&self.object, object) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }

    /// `origin`'s object and offset, as its key holds them.
    fn site_of(origin: &Origin) -> (Option<&Arc<str>>, u64) {
        match &origin.call_site {
            Some(site) => (site.object.as_ref(), site.offset),
            None => (None, 0),
        }
    }

    /// Whether this is `origin`'s key, without building one.
    fn is_of(&self, origin: &Origin) -> bool {
        let (object, offset) = Self::site_of(origin);
        self.is(origin.cause, object, offset)
    }

    pub fn of(origin: &Origin) -> Self {
        let (object, offset) = Self::site_of(origin);
        SiteKey {
            cause: origin.cause,
            object: object.cloned(),
            offset,
        }
    }
}

/// Samples kept per call site: one per second at most, so about two
/// minutes of growth while a site keeps changing (longer when it is calm).
pub const SERIES_LEN: usize = 128;
/// Call sites per process with a series; totals are kept for all of them.
pub const MAX_SERIES_SITES: usize = 256;
const SECOND_NS: u64 = 1_000_000_000;

/// One call site's outstanding memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub bytes: u64,
    /// Spans: ranges made by one call, as split by later changes.
    pub spans: u64,
    /// (second bucket start, bytes at its end), oldest first.
    series: VecDeque<(u64, u64)>,
}

impl Tally {
    /// Bytes outstanding at `ts_ns` as far as the series remembers; the
    /// oldest sample when `ts_ns` is older than it (and then false).
    pub fn bytes_at(&self, ts_ns: u64) -> (u64, bool) {
        let mut value = None;
        for &(t, b) in self.series.iter() {
            if t > ts_ns {
                break;
            }
            value = Some(b);
        }
        match value {
            Some(v) => (v, true),
            None if self.series.front().is_some_and(|(t, _)| *t > ts_ns) => {
                // Everything recorded came after `ts_ns`: the site made
                // nothing before, unless the series was trimmed.
                (0, self.series.len() < SERIES_LEN)
            }
            None => (self.bytes, true),
        }
    }

    fn sample(&mut self, ts_ns: u64, with_series: bool) {
        if !with_series {
            return;
        }
        let bucket = ts_ns - ts_ns % SECOND_NS;
        match self.series.back_mut() {
            Some((t, b)) if *t >= bucket => *b = self.bytes,
            _ => {
                if self.series.len() >= SERIES_LEN {
                    self.series.pop_front();
                }
                self.series.push_back((bucket, self.bytes));
            }
        }
    }
}

/// A call site's place in [`SiteTotals`]: spans keep it, so a munmap or a
/// split updates its tally without hashing the key again.
pub(super) type Slot = u32;

/// Outstanding bytes per call site for one process.
///
/// Tallies live in slots; the key is hashed once, when a span is made.
/// Keys hold user-chosen numbers (a call site's offset), so the index is
/// keyed with a random seed per map (foldhash): a process cannot line up
/// collisions it has not seen, at a fraction of SipHash's cost.
#[derive(Clone, Debug, Default)]
pub struct SiteTotals {
    index: HashMap<SiteKey, Slot, foldhash::fast::RandomState>,
    slots: Vec<Option<(SiteKey, Tally)>>,
    /// Slots emptied by sites that left, reused first.
    free: Vec<Slot>,
    series_sites: usize,
    /// The slot [`SiteTotals::slot`] found last: a loop calling from one
    /// site finds it again without hashing.
    last: Option<Slot>,
}

impl SiteTotals {
    pub fn iter(&self) -> impl Iterator<Item = (&SiteKey, &Tally)> {
        self.slots.iter().flatten().map(|(k, t)| (k, t))
    }

    /// The slot of `origin`'s call site, made if new, and whether a
    /// first [`SiteTotals::add`] to it keeps a series.
    pub(super) fn slot(&mut self, origin: &Origin) -> (Slot, bool) {
        if let Some(last) = self.last
            && let Some(Some((key, _))) = self.slots.get(last as usize)
            && key.is_of(origin)
        {
            return (last, true);
        }
        let key = SiteKey::of(origin);
        if let Some(&slot) = self.index.get(&key) {
            self.last = Some(slot);
            return (slot, true);
        }
        let with_series = self.series_sites < MAX_SERIES_SITES;
        if with_series {
            self.series_sites += 1;
        }
        let entry = Some((key.clone(), Tally::default()));
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = entry;
                slot
            }
            None => {
                self.slots.push(entry);
                (self.slots.len() - 1) as Slot
            }
        };
        self.index.insert(key, slot);
        self.last = Some(slot);
        (slot, with_series)
    }

    fn tally(&mut self, slot: Slot) -> Option<&mut Tally> {
        self.slots
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
            .map(|(_, t)| t)
    }

    /// A span of `len` bytes was made by `slot`'s site; `with_series` as
    /// [`SiteTotals::slot`] said (true for a site already counted).
    pub(super) fn add(&mut self, slot: Slot, with_series: bool, len: u64, ts_ns: u64) {
        if let Some(tally) = self.tally(slot) {
            tally.bytes += len;
            tally.spans += 1;
            let keep = with_series || !tally.series.is_empty();
            tally.sample(ts_ns, keep);
        }
    }

    /// One of the site's spans became two.
    pub(super) fn split(&mut self, slot: Slot) {
        if let Some(tally) = self.tally(slot) {
            tally.spans += 1;
        }
    }

    pub(super) fn sub(&mut self, slot: Slot, len: u64, ts_ns: u64) {
        let Some(tally) = self.tally(slot) else {
            return;
        };
        tally.bytes = tally.bytes.saturating_sub(len);
        tally.spans = tally.spans.saturating_sub(1);
        let with_series = !tally.series.is_empty();
        tally.sample(ts_ns, with_series);
        if tally.bytes == 0
            && !with_series
            && let Some((key, _)) = self.slots[slot as usize].take()
        {
            // No span holds the slot any more (each holds bytes).
            self.index.remove(&key);
            self.free.push(slot);
        }
    }

    /// The same sites with their series but no bytes, for a rebuild from
    /// a snapshot (the bytes are recounted; the history stays). Slots are
    /// kept, so spans carried over still name theirs.
    pub(super) fn emptied(&self) -> SiteTotals {
        let mut next = self.clone();
        for (_, tally) in next.slots.iter_mut().flatten() {
            tally.bytes = 0;
            tally.spans = 0;
        }
        next
    }
}
