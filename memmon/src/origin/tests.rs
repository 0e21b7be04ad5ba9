//! The origin map against a page-array oracle written independently of
//! it: per page, which op created it and which last changed it.

use std::sync::Arc;

use proptest::prelude::*;

use super::{Cause, Origin, OriginMap, SiteKey, apply};
use crate::events::Syscall;
use crate::model::ops::{MREMAP_DONTUNMAP, MemOp};
use crate::model::tests::props::{any_op, start};
use crate::model::tests::reference::{BASE, PAGES};
use crate::model::{AddressSpace, PAGE_SIZE, page_align_up};

/// Per page: (creating op, last changing op), ops numbered from 1; 0 is
/// the seed.
type Pages = Vec<Option<(u64, Option<u64>)>>;

fn idx(addr: u64) -> Option<usize> {
    let i = addr.checked_sub(BASE)? / PAGE_SIZE;
    (i < PAGES as u64).then_some(i as usize)
}

fn pages_of(addr: u64, len: u64) -> std::ops::Range<usize> {
    let a = idx(addr).unwrap_or(PAGES);
    let n = (page_align_up(len) / PAGE_SIZE) as usize;
    a..(a + n).min(PAGES)
}

fn present(space: &AddressSpace, page: usize) -> bool {
    space.region_at(BASE + page as u64 * PAGE_SIZE).is_some()
}

/// The oracle: what each op does to pages, in the simplest terms.
fn oracle(pages: &mut Pages, op: &MemOp, id: u64, before: &AddressSpace, after: &AddressSpace) {
    match op {
        MemOp::Mmap { addr, len, .. } => {
            for p in pages_of(*addr, *len) {
                pages[p] = Some((id, None));
            }
        }
        MemOp::Munmap { addr, len } => {
            for p in pages_of(*addr, *len) {
                pages[p] = None;
            }
        }
        MemOp::Mprotect { addr, len, .. } => {
            for p in pages_of(*addr, *len) {
                if let Some((_, changed)) = &mut pages[p] {
                    *changed = Some(id);
                }
            }
        }
        MemOp::Mremap {
            old_addr,
            old_len,
            new_len,
            flags,
            new_addr,
        } => {
            let old: Vec<usize> = pages_of(*old_addr, *old_len).collect();
            let new: Vec<usize> = pages_of(*new_addr, *new_len).collect();
            if new.is_empty() {
                return;
            }
            if old_addr == new_addr {
                for (i, &p) in old.iter().enumerate() {
                    if i < new.len() {
                        if let Some((_, c)) = &mut pages[p] {
                            *c = Some(id);
                        }
                    } else {
                        pages[p] = None;
                    }
                }
                if !old.is_empty() {
                    for &p in &new[old.len().min(new.len())..] {
                        pages[p] = Some((id, None));
                    }
                }
                return;
            }
            if old.is_empty() {
                for &p in &new {
                    pages[p] = Some((id, None));
                }
                return;
            }
            let source: Vec<_> = old.iter().map(|&p| pages[p]).collect();
            if source.iter().take(new.len()).all(Option::is_none) {
                return;
            }
            for (i, &p) in old.iter().enumerate() {
                if i >= new.len() || flags & MREMAP_DONTUNMAP == 0 {
                    pages[p] = None;
                } else if let Some((_, c)) = &mut pages[p] {
                    *c = Some(id);
                }
            }
            for (i, &p) in new.iter().enumerate() {
                pages[p] = match source.get(i) {
                    Some(Some((created, _))) => Some((*created, Some(id))),
                    Some(None) => None,
                    None => Some((id, None)),
                };
            }
        }
        MemOp::Brk { .. } => {
            let end = |s: &AddressSpace| s.brk.map(|b| page_align_up(b.brk.max(b.start_brk)));
            if let (Some(old), Some(new)) = (end(before), end(after)) {
                for (p, page) in pages.iter_mut().enumerate() {
                    let at = BASE + p as u64 * PAGE_SIZE;
                    if at >= old.min(new) && at < old.max(new) {
                        *page = (new > old).then_some((id, None));
                    }
                }
            }
        }
        MemOp::ShmDetach { .. } | MemOp::SetAnonName { .. } => {}
    }
}

/// The model decides what exists.
fn keep_present(pages: &mut Pages, after: &AddressSpace) {
    for (p, page) in pages.iter_mut().enumerate() {
        if !present(after, p) {
            *page = None;
        }
    }
}

/// Op `id`'s origin: three call sites take turns, so tallies of several
/// sites split, move and empty (and their slots are reused).
fn origin(id: u64) -> Arc<Origin> {
    Arc::new(Origin {
        cause: Cause::Syscall(Syscall::Mmap),
        ts_ns: id,
        tid: 1,
        call_site: Some(super::CallSite {
            addr: 0x1000 + id % 3,
            object: None,
            offset: 0x1000 + id % 3,
            dev: (0, 0),
        }),
        stack_id: None,
    })
}

fn view(map: &OriginMap) -> Pages {
    (0..PAGES)
        .map(|p| {
            let at = BASE + p as u64 * PAGE_SIZE;
            map.spans_in(at, at + 1)
                .next()
                .map(|(_, s)| (s.created.ts_ns, s.changed.as_ref().map(|c| c.ts_ns)))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn origins_match_the_page_oracle(ops in prop::collection::vec(any_op(), 1..40)) {
        let mut space = start();
        let mut map = OriginMap::new();
        let mut pages: Pages = vec![None; PAGES];
        for (step, op) in ops.iter().enumerate() {
            let id = step as u64 + 1;
            let before = space.clone();
            space.apply(op);
            apply(&mut map, op, before.brk, &space, id, Some(origin(id)));
            oracle(&mut pages, op, id, &before, &space);
            keep_present(&mut pages, &space);
            prop_assert_eq!(view(&map), pages.clone(), "after step {} {:?}", step, op);
            // Spans never overlap, and every span lies in a region.
            let mut prev_end = 0;
            for (s, span) in map.spans() {
                prop_assert!(s >= prev_end && s < span.end);
                prev_end = span.end;
            }
            // Totals are the spans' bytes.
            let mut sum = std::collections::HashMap::new();
            for (s, span) in map.spans() {
                let entry = sum.entry(SiteKey::of(&span.created)).or_insert((0, 0));
                entry.0 += span.end - s;
                entry.1 += 1;
            }
            let mut counted = 0;
            for (key, tally) in map.totals().iter() {
                let (bytes, spans) = sum.get(key).copied().unwrap_or((0, 0));
                prop_assert_eq!((tally.bytes, tally.spans), (bytes, spans));
                counted += usize::from(bytes > 0);
            }
            // Every site holding memory has its tally, once.
            prop_assert_eq!(counted, sum.len());
        }
    }
}

#[test]
fn a_snapshot_keeps_known_origins_and_seeds_the_rest() {
    let mut space = start();
    let op = MemOp::Mmap {
        addr: BASE,
        len: 4 * PAGE_SIZE,
        prot: 3,
        flags: 0x22,
        backing: crate::model::Backing::anonymous(),
        offset: 0,
    };
    space.apply(&op);
    let mut map = OriginMap::new();
    apply(&mut map, &op, None, &space, 1, Some(origin(1)));
    // Events were missed: the snapshot shows one more region.
    space.apply(&MemOp::Mmap {
        addr: BASE + 8 * PAGE_SIZE,
        len: PAGE_SIZE,
        prot: 1,
        flags: 0x22,
        backing: crate::model::Backing::anonymous(),
        offset: 0,
    });
    let seeded = map.rebase(&space, &Origin::seed(99));
    let got: Vec<(u64, u64, u64)> = seeded
        .spans()
        .map(|(s, span)| (s, span.end, span.created.ts_ns))
        .collect();
    assert_eq!(
        got,
        vec![
            (BASE, BASE + 4 * PAGE_SIZE, 1),
            (BASE + 8 * PAGE_SIZE, BASE + 9 * PAGE_SIZE, 99),
        ]
    );
}

#[test]
fn a_removed_origin_is_reused_only_when_nothing_else_holds_it() {
    let mmap = |addr| MemOp::Mmap {
        addr,
        len: PAGE_SIZE,
        prot: 3,
        flags: 0x22,
        backing: crate::model::Backing::anonymous(),
        offset: 0,
    };
    let munmap = |addr| MemOp::Munmap {
        addr,
        len: PAGE_SIZE,
    };
    let mut space = start();
    let mut map = OriginMap::new();
    let mut run = |map: &mut OriginMap, op: &MemOp, origin| {
        space.apply(op);
        apply(map, op, None, &space, 1, origin);
    };

    // Only the map held op 1's origin: op 2's takes its allocation.
    let first = map.new_origin((*origin(1)).clone());
    let first_ptr = Arc::as_ptr(&first);
    run(&mut map, &mmap(BASE), Some(first));
    run(&mut map, &munmap(BASE), None);
    let second = map.new_origin((*origin(2)).clone());
    assert_eq!(Arc::as_ptr(&second), first_ptr);
    assert_eq!(second.ts_ns, 2);

    // A view still holds op 2's origin: op 3's is a new one, and the
    // view's is untouched.
    let held = Arc::clone(&second);
    run(&mut map, &mmap(BASE), Some(second));
    run(&mut map, &munmap(BASE), None);
    let third = map.new_origin((*origin(3)).clone());
    assert_ne!(Arc::as_ptr(&third), Arc::as_ptr(&held));
    assert_eq!((held.ts_ns, third.ts_ns), (2, 3));
}
