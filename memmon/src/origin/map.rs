//! Origins per byte range: non-overlapping spans keyed by start address.
//! Shared with workers as the model is (an `Arc`, copied only when the
//! loop changes a process a worker still holds): a persistent map made
//! every event's update several times dearer.

use std::{collections::BTreeMap, iter::Peekable, sync::Arc};

use super::{
    Origin,
    totals::{SiteTotals, Slot},
};
use crate::model::AddressSpace;

/// `[start, end)` made by `created` and, if since changed (mprotect, an
/// mremap that kept it), last changed by `changed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub end: u64,
    pub created: Arc<Origin>,
    pub changed: Option<Arc<Origin>>,
    /// `created`'s call site in the map's [`SiteTotals`].
    pub(super) site: Slot,
}

/// The origins of one address space, and the bytes outstanding per call
/// site that follow from them.
#[derive(Clone, Debug, Default)]
pub struct OriginMap {
    spans: BTreeMap<u64, Span>,
    /// The span made last, not yet in `spans`: a munmap of exactly it (an
    /// allocator's round trip) then touches no tree at all. It never
    /// overlaps `spans`; readers see both, anything else settles it first.
    newest: Option<(u64, Span)>,
    totals: SiteTotals,
    spare: Spare,
}

/// Spans in address order: the tree's, with the newest one in its place.
struct WithNewest<'a, I: Iterator<Item = (u64, &'a Span)>> {
    tree: Peekable<I>,
    newest: Option<(u64, &'a Span)>,
}

impl<'a, I: Iterator<Item = (u64, &'a Span)>> Iterator for WithNewest<'a, I> {
    type Item = (u64, &'a Span);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.newest, self.tree.peek()) {
            (Some((s, _)), Some(&(t, _))) if t < s => self.tree.next(),
            (Some(newest), _) => {
                self.newest = None;
                Some(newest)
            }
            (None, _) => self.tree.next(),
        }
    }
}

/// The origin of the last span a munmap removed whole, kept to hold the
/// next event's origin ([`OriginMap::new_origin`]): an mmap+munmap pair
/// then allocates and frees nothing. Not carried into copies.
#[derive(Debug, Default)]
struct Spare(Option<Arc<Origin>>);

impl Clone for Spare {
    fn clone(&self) -> Self {
        Spare(None)
    }
}

impl OriginMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spans in address order, with their starts.
    pub fn spans(&self) -> impl Iterator<Item = (u64, &Span)> {
        WithNewest {
            tree: self.spans.iter().map(|(s, span)| (*s, span)).peekable(),
            newest: self.newest.as_ref().map(|(s, span)| (*s, span)),
        }
    }

    /// Puts the newest span into the tree, before any change but the
    /// two it makes cheap.
    fn settle(&mut self) {
        if let Some((start, span)) = self.newest.take() {
            self.spans.insert(start, span);
        }
    }

    /// Spans overlapping `[start, end)`, unclipped.
    pub fn spans_in(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, &Span)> {
        let first = self
            .spans
            .range(..=start)
            .next_back()
            .filter(|(_, s)| s.end > start)
            .map_or(start, |(s, _)| *s);
        let tree = self
            .spans
            .range(first..end.max(first))
            .map(|(s, span)| (*s, span))
            .filter(move |(_, span)| span.end > start);
        WithNewest {
            tree: tree.peekable(),
            newest: self
                .newest
                .as_ref()
                .filter(|(s, span)| *s < end && span.end > start)
                .map(|(s, span)| (*s, span)),
        }
    }

    pub fn totals(&self) -> &SiteTotals {
        &self.totals
    }

    /// `origin`, shared: in the spare's allocation when nothing else
    /// holds it any more.
    pub fn new_origin(&mut self, origin: Origin) -> Arc<Origin> {
        if let Some(mut spare) = self.spare.0.take()
            && let Some(slot) = Arc::get_mut(&mut spare)
        {
            *slot = origin;
            return spare;
        }
        Arc::new(origin)
    }

    /// Makes `addr` a span boundary (a span across it becomes two halves
    /// with the same origins).
    fn split_at(&mut self, addr: u64) {
        self.settle();
        let Some((start, span)) = self
            .spans
            .range(..=addr)
            .next_back()
            .filter(|(s, span)| **s < addr && addr < span.end)
            .map(|(s, span)| (*s, span.clone()))
        else {
            return;
        };
        let upper = Span {
            end: span.end,
            ..span.clone()
        };
        if let Some(lower) = self.spans.get_mut(&start) {
            lower.end = addr;
        }
        self.totals.split(upper.site);
        self.spans.insert(addr, upper);
    }

    /// Takes `[start, end)` out, returning the pieces (already clipped).
    fn take(&mut self, start: u64, end: u64) -> Vec<(u64, Span)> {
        if start >= end {
            return Vec::new();
        }
        self.settle();
        self.split_at(start);
        self.split_at(end);
        let keys: Vec<u64> = self.spans.range(start..end).map(|(s, _)| *s).collect();
        keys.into_iter()
            .filter_map(|s| self.spans.remove(&s).map(|span| (s, span)))
            .collect()
    }

    /// Adds `span`, counted for its site (`with_series` as
    /// [`SiteTotals::slot`] said; true for a site already counted).
    fn put(&mut self, start: u64, span: Span, ts_ns: u64, with_series: bool) {
        self.settle();
        self.totals
            .add(span.site, with_series, span.end - start, ts_ns);
        self.spans.insert(start, span);
    }

    /// A new span for `origin`, its site looked up (the one hash per
    /// span: later splits and removals use the slot it keeps).
    fn put_new(&mut self, start: u64, end: u64, origin: Arc<Origin>, ts_ns: u64) {
        let (site, with_series) = self.totals.slot(&origin);
        let span = Span {
            end,
            created: origin,
            changed: None,
            site,
        };
        self.settle();
        self.totals.add(site, with_series, span.end - start, ts_ns);
        self.newest = Some((start, span));
    }

    /// Forgets `[start, end)` (munmap, shmdt, brk shrinking). No list is
    /// built: this runs for every munmap.
    pub fn remove(&mut self, start: u64, end: u64, ts_ns: u64) {
        if start >= end {
            return;
        }
        if self
            .newest
            .as_ref()
            .is_some_and(|(s, span)| *s == start && span.end == end)
            && let Some((_, span)) = self.newest.take()
        {
            // What the last mmap made goes again: no tree touched.
            self.totals.sub(span.site, end - start, ts_ns);
            self.spare.0 = Some(span.created);
            return;
        }
        self.settle();
        // The common cases in one search: nothing there (an mmap into a
        // hole), or exactly one span (a munmap of what one mmap made).
        match self.spans.range(..end).next_back() {
            None => return,
            Some((_, span)) if span.end <= start => return,
            Some((&s, span)) if s == start && span.end == end => {
                let site = span.site;
                if let Some(span) = self.spans.remove(&s) {
                    self.spare.0 = Some(span.created);
                }
                self.totals.sub(site, end - start, ts_ns);
                return;
            }
            Some(_) => {}
        }
        self.split_at(start);
        self.split_at(end);
        while let Some(s) = self.spans.range(start..end).next().map(|(s, _)| *s) {
            if let Some(span) = self.spans.remove(&s) {
                self.totals.sub(span.site, span.end - s, ts_ns);
            }
        }
    }

    /// `[start, end)` was made by `origin` (whatever was there is gone, as
    /// MAP_FIXED replaces it).
    pub fn create(&mut self, start: u64, end: u64, origin: &Arc<Origin>) {
        self.create_from(start, end, Arc::clone(origin));
    }

    /// [`OriginMap::create`], taking the caller's reference to `origin`.
    pub fn create_from(&mut self, start: u64, end: u64, origin: Arc<Origin>) {
        if start >= end {
            return;
        }
        let ts = origin.ts_ns;
        self.remove(start, end, ts);
        self.put_new(start, end, origin, ts);
    }

    /// Records `origin` as the last change to whatever exists in
    /// `[start, end)` (mprotect; mremap for the part it kept).
    pub fn mark_changed(&mut self, start: u64, end: u64, origin: &Arc<Origin>) {
        if start >= end {
            return;
        }
        self.settle();
        self.split_at(start);
        self.split_at(end);
        for (_, span) in self.spans.range_mut(start..end) {
            span.changed = Some(Arc::clone(origin));
        }
    }

    /// mremap moved `[from, from + len)` to `to`: the spans keep their
    /// origins (the destination was cleared by the kernel first). With
    /// `keep_source` (MREMAP_DONTUNMAP) the source stays mapped too.
    pub fn relocate(
        &mut self,
        from: u64,
        len: u64,
        to: u64,
        keep_source: bool,
        origin: &Arc<Origin>,
    ) {
        let (Some(from_end), Some(to_end)) = (from.checked_add(len), to.checked_add(len)) else {
            return;
        };
        let moved = self.take(from, from_end);
        if moved.is_empty() {
            return; // nothing known there: leave the target alone
        }
        self.remove(to, to_end, origin.ts_ns);
        for (s, span) in moved {
            let mut copy = Span {
                end: span.end - from + to,
                ..span.clone()
            };
            copy.changed = Some(Arc::clone(origin));
            if keep_source {
                // Both ranges now hold memory this call site made.
                let mut source = span;
                source.changed = Some(Arc::clone(origin));
                self.spans.insert(s, source); // counted already
                self.put(s - from + to, copy, origin.ts_ns, true);
            } else {
                // Moved, not made: the call site's bytes are unchanged.
                self.spans.insert(s - from + to, copy);
            }
        }
    }

    /// Drops what no region covers within `[start, end)`: the model is the
    /// judge of what exists (shmdt's extent, say, is only known to it).
    pub fn clip_to(&mut self, space: &AddressSpace, start: u64, end: u64, ts_ns: u64) {
        // Nearly always one region covers it all (the model just made it):
        // one search, and nothing to drop.
        if space.region_at(start).is_some_and(|r| r.end >= end) {
            return;
        }
        let mut holes = Vec::new();
        let mut at = start;
        for region in space.regions_in(start, end) {
            if region.start > at {
                holes.push((at, region.start));
            }
            at = at.max(region.end);
        }
        if at < end {
            holes.push((at, end));
        }
        for (s, e) in holes {
            self.remove(s, e, ts_ns);
        }
    }

    /// Carries these origins over to a fresh snapshot of the process:
    /// ranges the snapshot still has keep their origins, the rest of what
    /// it shows is `seed` (made while memmon was not looking).
    pub fn rebase(&self, space: &AddressSpace, seed: &Arc<Origin>) -> OriginMap {
        let mut next = OriginMap {
            spans: BTreeMap::new(),
            newest: None,
            totals: self.totals.emptied(),
            spare: Spare::default(),
        };
        for region in space.regions() {
            let mut at = region.start;
            let old: Vec<(u64, Span)> = self
                .spans_in(region.start, region.end)
                .map(|(s, span)| (s, span.clone()))
                .collect();
            for (s, mut span) in old {
                let s = s.max(region.start);
                span.end = span.end.min(region.end);
                if s > at {
                    next.put_new(at, s, Arc::clone(seed), seed.ts_ns);
                }
                at = span.end;
                // Its slot is the same in the emptied totals.
                next.put(s, span, seed.ts_ns, true);
            }
            if at < region.end {
                next.put_new(at, region.end, Arc::clone(seed), seed.ts_ns);
            }
        }
        next
    }
}
