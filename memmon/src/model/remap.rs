//! mremap: shrink, grow in place, move, and MREMAP_DONTUNMAP.

use super::AddressSpace;
use super::ops::MREMAP_DONTUNMAP;
use super::region::{Region, page_align_up};

impl AddressSpace {
    /// A successful mremap whose result was `new_addr`. Mirrors
    /// mm/mremap.c: a result equal to `old_addr` means in place.
    pub fn mremap(&mut self, old_addr: u64, old_len: u64, new_len: u64, flags: u64, new_addr: u64) {
        let (old_len, new_len) = (page_align_up(old_len), page_align_up(new_len));
        // A successful call never wraps; a garbage event must not panic.
        let Some(old_end) = old_addr.checked_add(old_len) else {
            return;
        };
        if new_len == 0 || new_addr.checked_add(new_len).is_none() {
            return;
        }
        if new_addr == old_addr {
            if new_len <= old_len {
                self.take_range(old_addr + new_len, old_end);
            } else if old_len > 0 {
                self.grow_in_place(old_addr, old_end, new_len);
            }
            return;
        }
        if old_len == 0 {
            // old_len 0 on a shared mapping creates a second mapping of it.
            if let Some(src) = self.region_at(old_addr).cloned() {
                self.map_region(extension(&src, old_addr, new_addr, new_len));
            }
            return;
        }
        self.move_range(old_addr, old_len, new_len, flags, new_addr);
    }

    fn grow_in_place(&mut self, old_addr: u64, old_end: u64, new_len: u64) {
        // The kernel extends the VMA ending at old_end; with no source the
        // event is stale and there is nothing to extend.
        let Some(tail) = self.region_at(old_end - 1).cloned() else {
            return;
        };
        self.map_region(extension(
            &tail,
            old_end,
            old_end,
            old_addr + new_len - old_end,
        ));
    }

    fn move_range(&mut self, old_addr: u64, old_len: u64, new_len: u64, flags: u64, new_addr: u64) {
        let moved_len = old_len.min(new_len);
        let pieces = self.clipped(old_addr, old_addr + moved_len);
        if pieces.is_empty() {
            // Already applied (the source is gone) or the model is newer
            // than the event: leave the target alone.
            return;
        }
        let old_end = old_addr + old_len;
        let tail = self.region_at(old_end - 1).cloned();
        let new_end = new_addr + new_len;
        // Same order as the kernel: clear the target, drop the part of the
        // source beyond new_len, then move (keeping the source on DONTUNMAP).
        self.take_range(new_addr, new_end);
        self.take_range(old_addr + moved_len, old_end);
        if flags & MREMAP_DONTUNMAP == 0 {
            self.take_range(old_addr, old_addr + moved_len);
        }
        let mut moved: Vec<Region> = pieces
            .into_iter()
            .map(|r| Region {
                start: r.start - old_addr + new_addr,
                end: r.end - old_addr + new_addr,
                ..r
            })
            .collect();
        if new_len > old_len
            && let Some(tail) = tail
        {
            moved.push(extension(
                &tail,
                old_end,
                new_addr + old_len,
                new_len - old_len,
            ));
        }
        self.insert_all(moved);
    }
}

/// `len` bytes at `at` with the attributes of `src`, the file offset being
/// the one `src` would have at `src_addr` (which may be `src.end`).
fn extension(src: &Region, src_addr: u64, at: u64, len: u64) -> Region {
    Region {
        start: at,
        end: at.saturating_add(len),
        offset: src.offset.wrapping_add(src_addr - src.start),
        ..src.clone()
    }
}
