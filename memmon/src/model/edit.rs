//! Low-level region surgery shared by the operations: splitting at a
//! boundary, cutting a range out, inserting, and re-merging neighbours.
//!
//! The map is kept fully merged (no two adjacent regions satisfy
//! `Region::can_merge`), so two spaces with the same per-page content are
//! structurally equal; that is what makes every operation idempotent.

use super::{AddressSpace, Backing, Region};

/// Anonymous memory has no meaningful offset; pin it to 0 so slices and
/// merges stay canonical.
pub(super) fn canonical(mut region: Region) -> Region {
    if matches!(region.backing, Backing::Anonymous { .. }) {
        region.offset = 0;
    }
    region
}

impl AddressSpace {
    /// Ensures no region straddles `addr` (so `addr` is a region boundary or
    /// unmapped). O(log n).
    pub(super) fn split_at(&mut self, addr: u64) {
        let Some((_, region)) = self.regions.range_mut(..addr).next_back() else {
            return;
        };
        if region.end <= addr {
            return;
        }
        let tail = canonical(region.slice(addr, region.end));
        region.end = addr;
        self.regions.insert(addr, tail);
    }

    /// Removes the parts of regions inside `[start, end)`. O((k + 1) log n),
    /// without allocating: most cuts remove one region or none.
    pub(super) fn take_range(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // One lookup when a single region covers the range, as munmap
        // usually finds (a whole mapping, or the end of one it merged into).
        let Some((&key, last)) = self.regions.range_mut(..end).next_back() else {
            return;
        };
        if last.end <= start {
            return; // nothing mapped there
        }
        if key <= start && last.end >= end {
            let old_end = last.end;
            let tail = (old_end > end).then(|| canonical(last.slice(end, old_end)));
            if key == start {
                self.regions.remove(&start);
            } else {
                last.end = start;
            }
            if let Some(tail) = tail {
                self.regions.insert(end, tail);
            }
            return;
        }
        self.split_at(start);
        self.split_at(end);
        while let Some(key) = self.regions.range(start..end).next().map(|(k, _)| *k) {
            self.regions.remove(&key);
        }
    }

    /// Copies of the parts of regions inside `[start, end)`, clipped to it.
    pub(super) fn clipped(&self, start: u64, end: u64) -> Vec<Region> {
        if start >= end {
            return Vec::new();
        }
        let first = self
            .regions
            .range(..start)
            .next_back()
            .map_or(start, |(k, _)| *k);
        self.regions
            .range(first..end)
            .map(|(_, r)| r)
            .filter(|r| r.end > start)
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
        // Into a hole, as mmap usually maps: nothing to cut, and often
        // only the region below to extend.
        match self.regions.range_mut(..end).next_back() {
            Some((_, below)) if below.end <= start && below.can_merge(&region) => {
                below.end = end;
            }
            Some((_, below)) if below.end <= start => {
                self.regions.insert(start, region);
            }
            None => {
                self.regions.insert(start, region);
            }
            Some(_) => {
                self.take_range(start, end);
                self.regions.insert(start, region);
            }
        }
        self.merge_span(start, end);
    }

    /// Inserts regions known to fall in a hole, then merges once.
    pub(super) fn insert_all(&mut self, regions: Vec<Region>) {
        let (Some(first), Some(last)) = (regions.first(), regions.last()) else {
            return;
        };
        let (start, end) = (first.start, last.end);
        for region in regions {
            self.regions.insert(region.start, canonical(region));
        }
        self.merge_span(start, end);
    }

    /// Merges every mergeable adjacent pair among the regions touching
    /// `[start, end]`, including the neighbours just outside.
    /// O((k + 1) log n), without allocating.
    pub(super) fn merge_span(&mut self, start: u64, end: u64) {
        let first = self
            .regions
            .range(..start)
            .next_back()
            .map_or(start, |(k, _)| *k);
        let mut acc = first;
        loop {
            let mut pair = self.regions.range_mut(acc..=end);
            let (Some((_, left)), Some((&key, right))) = (pair.next(), pair.next()) else {
                return;
            };
            if left.can_merge(right) {
                left.end = right.end;
                self.regions.remove(&key);
            } else {
                acc = key;
            }
        }
    }
}
