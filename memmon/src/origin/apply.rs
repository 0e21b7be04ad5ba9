//! Keeps an [`OriginMap`] in step with the model: one update per
//! operation, mirroring what the operation did to the regions.

use std::sync::Arc;

use super::{Origin, OriginMap};
use crate::model::{AddressSpace, BrkState, MemOp, ops::MREMAP_DONTUNMAP, page_align_up};

/// `[addr, addr + len)` with `len` rounded up to pages, or None if it wraps.
fn range(addr: u64, len: u64) -> Option<(u64, u64)> {
    addr.checked_add(page_align_up(len)).map(|end| (addr, end))
}

/// Whether `op` records who did it (a munmap only takes memory away: no
/// origin need be built for it, on the path every event takes).
pub fn keeps_origin(op: &MemOp) -> bool {
    !matches!(
        op,
        MemOp::Munmap { .. } | MemOp::ShmDetach { .. } | MemOp::SetAnonName { .. }
    )
}

/// Applies to `map` what `op` (already applied to `after`) did at `ts`,
/// with `origin` as its cause (needed when [`keeps_origin`]; an mmap's
/// span takes this reference).
/// `brk_before` is the program break before `op`.
pub fn apply(
    map: &mut OriginMap,
    op: &MemOp,
    brk_before: Option<BrkState>,
    after: &AddressSpace,
    ts: u64,
    origin: Option<Arc<Origin>>,
) {
    if let MemOp::Munmap { addr, len } = op {
        if let Some((s, e)) = range(*addr, *len) {
            map.remove(s, e, ts);
        }
        return;
    }
    if let MemOp::ShmDetach { addr } = op {
        // The model found the segment's extent; drop what it removed.
        let top = map.spans().last().map_or(*addr, |(_, s)| s.end);
        map.clip_to(after, *addr, top, ts);
        return;
    }
    let Some(origin) = origin else {
        return;
    };
    match op {
        MemOp::Mmap { addr, len, .. } => {
            // The model maps all of it: nothing to clip.
            if let Some((s, e)) = range(*addr, *len) {
                map.create_from(s, e, origin);
            }
        }
        MemOp::Mprotect { addr, len, .. } => {
            if let Some((s, e)) = range(*addr, *len) {
                map.mark_changed(s, e, &origin);
            }
        }
        MemOp::Mremap {
            old_addr,
            old_len,
            new_len,
            flags,
            new_addr,
        } => mremap(
            map, *old_addr, *old_len, *new_len, *flags, *new_addr, after, &origin,
        ),
        MemOp::Brk { .. } => {
            let (Some(before), Some(now)) = (brk_before, after.brk) else {
                return;
            };
            let old_end = page_align_up(before.brk.max(before.start_brk));
            let new_end = page_align_up(now.brk.max(now.start_brk));
            if new_end > old_end {
                map.create_from(old_end, new_end, origin);
                map.clip_to(after, old_end, new_end, ts);
            } else if new_end < old_end {
                map.remove(new_end, old_end, ts);
            }
        }
        // Handled above; a name is not a layout change.
        MemOp::Munmap { .. } | MemOp::ShmDetach { .. } | MemOp::SetAnonName { .. } => {}
    }
}

#[allow(clippy::too_many_arguments)]
fn mremap(
    map: &mut OriginMap,
    old_addr: u64,
    old_len: u64,
    new_len: u64,
    flags: u64,
    new_addr: u64,
    after: &AddressSpace,
    origin: &Arc<Origin>,
) {
    let ts = origin.ts_ns;
    let (old_len, new_len) = (page_align_up(old_len), page_align_up(new_len));
    let (Some(old_end), Some(new_end)) =
        (old_addr.checked_add(old_len), new_addr.checked_add(new_len))
    else {
        return;
    };
    if new_len == 0 {
        return;
    }
    if new_addr == old_addr {
        if new_len <= old_len {
            map.remove(new_end, old_end, ts);
            map.mark_changed(old_addr, new_end, origin);
        } else if old_len > 0 {
            map.mark_changed(old_addr, old_end, origin);
            map.create(old_end, new_end, origin);
            map.clip_to(after, old_end, new_end, ts);
        }
        return;
    }
    if old_len == 0 {
        // A second mapping of a shared one: this call made it.
        map.create(new_addr, new_end, origin);
        map.clip_to(after, new_addr, new_end, ts);
        return;
    }
    let kept = old_len.min(new_len);
    if map.spans_in(old_addr, old_addr + kept).next().is_none() {
        return; // the model, too, ignores a move with nothing to move
    }
    map.remove(old_addr + kept, old_end, ts);
    map.relocate(
        old_addr,
        kept,
        new_addr,
        flags & MREMAP_DONTUNMAP != 0,
        origin,
    );
    if new_len > old_len {
        map.create(new_addr + old_len, new_end, origin);
    }
    map.clip_to(after, new_addr, new_end, ts);
}
