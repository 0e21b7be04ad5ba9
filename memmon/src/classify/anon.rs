//! Anonymous private regions: what glibc and the thread library made them.

use super::{ClassifiedRegion, ClassifyInput, RegionKind, plain};
use crate::model::{Backing, PAGE_SIZE, Region};

/// glibc's `HEAP_MAX_SIZE` on 64-bit: each per-thread arena heap is a
/// reservation of this size, aligned to it (so `heap_for_ptr` can mask).
pub const ARENA_HEAP_SIZE: u64 = 64 << 20;
/// glibc's default (and minimum dynamic) `M_MMAP_THRESHOLD`.
pub const MMAP_THRESHOLD: u64 = 128 << 10;
/// `IS_MMAPPED` in a chunk's size field.
const IS_MMAPPED: u64 = 0x2;

fn is_anon_private(r: &Region) -> bool {
    matches!(r.backing, Backing::Anonymous { .. }) && !r.perms.shared
}

fn is_rw(r: &Region) -> bool {
    r.perms.read && r.perms.write && !r.perms.exec
}

/// Fills the still-unclassified anonymous regions in `out`: arenas, thread
/// stacks, their guards and malloc's mmap chunks. The rest stay `None`.
pub(super) fn classify_rest(
    regions: &[&Region],
    out: &mut [Option<ClassifiedRegion>],
    input: &ClassifyInput,
) {
    let open = |out: &[Option<ClassifiedRegion>], i: usize| {
        out[i].is_none() && is_anon_private(regions[i])
    };

    // Arena: a 64 MiB-aligned rw head, then the PROT_NONE rest of the
    // reservation that malloc hasn't grown into yet.
    for i in 0..regions.len() {
        let head = regions[i];
        if !open(out, i) || !is_rw(head) || !head.start.is_multiple_of(ARENA_HEAP_SIZE) {
            continue;
        }
        let tail = (i + 1 < regions.len()
            && open(out, i + 1)
            && regions[i + 1].start == head.end
            && regions[i + 1].perms.is_none())
        .then_some(i + 1);
        let end = tail.map_or(head.end, |t| regions[t].end);
        if (tail.is_some() && end - head.start <= ARENA_HEAP_SIZE) || head.len() == ARENA_HEAP_SIZE
        {
            for j in std::iter::once(i).chain(tail) {
                out[j] = Some(plain(regions[j], RegionKind::Arena));
            }
        }
    }

    // Thread stacks: mapped MAP_STACK, or holding a thread's stack pointer.
    for i in 0..regions.len() {
        let r = regions[i];
        let holds_sp = || {
            input
                .thread_stack_pointers
                .iter()
                .any(|&sp| sp >= r.start && sp < r.end)
        };
        if open(out, i) && is_rw(r) && (r.map_stack || holds_sp()) {
            out[i] = Some(plain(r, RegionKind::ThreadStack));
        }
    }

    // Guards: glibc mprotects the low end of a thread's stack mapping to
    // PROT_NONE, so overflowing the stack faults.
    for i in 1..regions.len() {
        let r = regions[i - 1];
        let above_stack = out[i]
            .as_ref()
            .is_some_and(|c| c.kind == RegionKind::ThreadStack);
        if above_stack && open(out, i - 1) && r.perms.is_none() && r.end == regions[i].start {
            out[i - 1] = Some(plain(r, RegionKind::Guard));
        }
    }

    for i in 0..regions.len() {
        let r = regions[i];
        if open(out, i) && is_rw(r) && r.len() >= MMAP_THRESHOLD && is_mmap_chunk(r, input) {
            out[i] = Some(plain(r, RegionKind::MmapChunk));
        }
    }
}

/// Without a probe, any large rw anonymous mapping is taken for a chunk;
/// with one, glibc's chunk header at the start must agree: `prev_size` 0
/// and a size with `IS_MMAPPED` equal to the region length (or less, when
/// the kernel merged the chunk with an adjacent anonymous mapping).
fn is_mmap_chunk(r: &Region, input: &ClassifyInput) -> bool {
    let Some(bytes) = input.probe.and_then(|probe| probe(r.start)) else {
        return true;
    };
    let prev_size = u64::from_ne_bytes(bytes[..8].try_into().unwrap());
    let size = u64::from_ne_bytes(bytes[8..].try_into().unwrap());
    let chunk = size & !0x7;
    prev_size == 0
        && size & 0x7 == IS_MMAPPED
        && chunk >= PAGE_SIZE
        && chunk.is_multiple_of(PAGE_SIZE)
        && chunk <= r.len()
}
