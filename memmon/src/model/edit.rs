//! Low-level region surgery shared by the operations: splitting at a
//! boundary, cutting a range out, inserting, and re-merging neighbours.
//!
//! The map is kept fully merged (no two adjacent regions satisfy
//! `Region::can_merge`), so two spaces with the same per-page content are
//! structurally equal; that is what makes every operation idempotent.
//! Regions are keyed by their end, so an edit that moves only a region's
//! start (the commonest ones) changes it in place.

use std::ops::Bound::{Excluded, Included, Unbounded};

use super::{AddressSpace, Backing, Region};

/// Anonymous memory has no meaningful offset; pin it to 0 so slices and
/// merges stay canonical.
pub(super) fn canonical(mut region: Region) -> Region {
    if matches!(region.backing, Backing::Anonymous { .. }) {
        region.offset = 0;
    }
    region
}

/// Drops the part of `region` below `to`, in place.
fn move_start(region: &mut Region, to: u64) {
    if !matches!(region.backing, Backing::Anonymous { .. }) {
        region.offset = region.offset_at(to);
    }
    region.start = to;
}

impl AddressSpace {
    /// Regions starting at or above `addr`, in address order.
    pub(super) fn regions_from(&self, addr: u64) -> impl Iterator<Item = &Region> {
        self.regions
            .range((Excluded(addr), Unbounded))
            .map(|(_, r)| r)
            .skip_while(move |r| r.start < addr)
    }

    /// Ensures no region straddles `addr` (so `addr` is a region boundary or
    /// unmapped). O(log n).
    pub(super) fn split_at(&mut self, addr: u64) {
        let Some((_, region)) = self.regions.range_mut((Excluded(addr), Unbounded)).next() else {
            return;
        };
        if region.start >= addr {
            return;
        }
        let lower = canonical(region.slice(region.start, addr));
        move_start(region, addr);
        self.regions.insert(addr, lower);
    }

    /// Removes the parts of regions inside `[start, end)`. O((k + 1) log n),
    /// without allocating: most cuts remove one region or none.
    pub(super) fn take_range(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // One lookup when a single region covers the range, as munmap
        // usually finds (a whole mapping, or the bottom of one it merged
        // into: changed in place).
        let Some((&key, first)) = self.regions.range_mut((Excluded(start), Unbounded)).next()
        else {
            return;
        };
        if first.start >= end {
            return; // nothing mapped there
        }
        if first.start <= start && key >= end {
            match (first.start == start, key == end) {
                (true, true) => {
                    self.regions.remove(&key);
                }
                (true, false) => move_start(first, end),
                (false, true) => {
                    if let Some(mut lower) = self.regions.remove(&key) {
                        lower.end = start;
                        self.regions.insert(start, lower);
                    }
                }
                (false, false) => {
                    let lower = canonical(first.slice(first.start, start));
                    move_start(first, end);
                    self.regions.insert(start, lower);
                }
            }
            return;
        }
        self.split_at(start);
        self.split_at(end);
        // Now exactly the regions ending in (start, end] lie inside.
        while let Some(key) = self
            .regions
            .range((Excluded(start), Included(end)))
            .next()
            .map(|(k, _)| *k)
        {
            self.regions.remove(&key);
        }
    }

    /// Copies of the parts of regions inside `[start, end)`, clipped to it.
    pub(super) fn clipped(&self, start: u64, end: u64) -> Vec<Region> {
        if start >= end {
            return Vec::new();
        }
        self.regions_in(start, end)
            .map(|r| canonical(r.slice(r.start.max(start), r.end.min(end))))
            .collect()
    }

    /// Puts `region` in place of whatever overlapped it (MAP_FIXED
    /// semantics) and merges it with compatible neighbours.
    pub fn map_region(&mut self, region: Region) {
        if region.is_empty() {
            return;
        }
        let (start, end) = (region.start, region.end);
        let region = canonical(region);
        // Into a hole, as mmap usually maps: at most the neighbours
        // touching it to extend, both found by one search (the one ending
        // at `start` has that key; what lies above comes next).
        let mut from = self.regions.range_mut(start..);
        let (below, above) = match from.next() {
            Some((&key, below)) if key == start => (Some(below), from.next()),
            above => (None, above),
        };
        let below_joins = below.is_some_and(|below| below.can_merge(&region));
        match above {
            Some((_, above)) if above.start < end => {
                self.take_range(start, end);
                self.regions.insert(end, region);
                self.merge_span(start, end);
            }
            Some((&key, above)) if above.start == end && region.can_merge(above) => {
                if !below_joins {
                    above.start = start;
                    above.offset = region.offset;
                } else if let Some(below) = self.regions.remove(&start)
                    && let Some(above) = self.regions.get_mut(&key)
                {
                    above.start = below.start;
                    above.offset = below.offset;
                }
            }
            _ if below_joins => {
                if let Some(mut below) = self.regions.remove(&start) {
                    below.end = end;
                    self.regions.insert(end, below);
                }
            }
            _ => {
                self.regions.insert(end, region);
            }
        }
    }

    /// Inserts regions known to fall in a hole, then merges once.
    pub(super) fn insert_all(&mut self, regions: Vec<Region>) {
        let (Some(first), Some(last)) = (regions.first(), regions.last()) else {
            return;
        };
        let (start, end) = (first.start, last.end);
        for region in regions {
            self.regions.insert(region.end, canonical(region));
        }
        self.merge_span(start, end);
    }

    /// Merges every mergeable adjacent pair among the regions touching
    /// `[start, end]`, including the neighbours just outside.
    /// O((k + 1) log n), without allocating.
    pub(super) fn merge_span(&mut self, start: u64, end: u64) {
        // From the neighbour ending at or below `start`.
        let mut acc = self
            .regions
            .range(..=start)
            .next_back()
            .map_or(start, |(k, _)| *k);
        loop {
            let mut pair = self.regions.range_mut(acc..);
            let (Some((&left_key, left)), Some((&right_key, right))) = (pair.next(), pair.next())
            else {
                return;
            };
            if left_key > end {
                return;
            }
            if left.can_merge(right) {
                // The upper one keeps its key and takes the lower's start.
                right.start = left.start;
                right.offset = left.offset;
                self.regions.remove(&left_key);
            }
            acc = right_key;
        }
    }
}
