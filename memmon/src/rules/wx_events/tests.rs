//! W^X detection: the JIT, node and JVM patterns by hand, then every
//! operation against a page oracle that reads the model before and after.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::model::ops::{MAP_PRIVATE, PROT_READ};
use crate::model::tests::props::{any_op, start};
use crate::model::tests::reference::{BASE, PAGES};
use crate::model::{PAGE_SIZE as P, ops::MREMAP_DONTUNMAP};
use crate::origin::Origin;
use crate::report::origins::CallSiteView;

const RW: u64 = PROT_READ | PROT_WRITE;
const RX: u64 = PROT_READ | PROT_EXEC;
const RWX: u64 = PROT_READ | PROT_WRITE | PROT_EXEC;
const ANON: u64 = MAP_PRIVATE | MAP_ANONYMOUS;

fn mmap(addr: u64, pages: u64, prot: u64, flags: u64, backing: Backing) -> MemOp {
    MemOp::Mmap {
        addr,
        len: pages * P,
        prot,
        flags,
        backing,
        offset: 0,
    }
}

fn anon(addr: u64, pages: u64, prot: u64) -> MemOp {
    mmap(addr, pages, prot, ANON, Backing::anonymous())
}

fn mprotect(addr: u64, pages: u64, prot: u64) -> MemOp {
    MemOp::Mprotect {
        addr,
        len: pages * P,
        prot,
    }
}

fn file() -> Backing {
    Backing::File {
        path: "/usr/lib/libx.so".into(),
        dev_major: 8,
        dev_minor: 1,
        inode: 7,
    }
}

/// Detects, then applies: what the tracker does.
fn step(
    space: &mut AddressSpace,
    op: MemOp,
) -> Vec<(WxKind, u64, u64, u64, Option<String>, String)> {
    let found = detect(&op, space).unwrap_or_default();
    space.apply(&op);
    found
        .iter()
        .map(|t| {
            let old = t.old.map(|p| p.to_string());
            (t.kind, t.start, t.end, t.bytes, old, t.new.to_string())
        })
        .collect()
}

const A: u64 = 0x7f00_0000_0000;

#[test]
fn the_jit_pattern_is_one_event_per_flip() {
    let mut space = AddressSpace::new();
    assert!(step(&mut space, anon(A, 1, RW)).is_empty());
    let to_x = step(&mut space, mprotect(A, 1, RX));
    assert_eq!(
        to_x,
        [
            (
                WxKind::WToX,
                A,
                A + P,
                P,
                Some("rw-p".into()),
                "r-xp".into()
            ),
            (
                WxKind::AnonExec,
                A,
                A + P,
                P,
                Some("rw-p".into()),
                "r-xp".into()
            ),
        ]
    );
    let back = step(&mut space, mprotect(A, 1, RW));
    assert_eq!(
        back,
        [(
            WxKind::XToW,
            A,
            A + P,
            P,
            Some("r-xp".into()),
            "rw-p".into()
        )]
    );
    // Read-only is neither W nor X: not even looked at.
    assert!(step(&mut space, mprotect(A, 1, PROT_READ)).is_empty());
}

#[test]
fn reserved_then_rwx_is_created_wx_and_anon_exec() {
    // V8's code space: reserved PROT_NONE, then mprotected RWX.
    let mut space = AddressSpace::new();
    step(&mut space, anon(A, 16, 0));
    let got = step(&mut space, mprotect(A + P, 4, RWX));
    let kinds: Vec<_> = got.iter().map(|g| (g.0, g.1, g.2)).collect();
    assert_eq!(
        kinds,
        [
            (WxKind::CreatedWx, A + P, A + 5 * P),
            (WxKind::AnonExec, A + P, A + 5 * P)
        ]
    );
    // Again on the same pages: they already were both.
    assert!(step(&mut space, mprotect(A + P, 4, RWX)).is_empty());
    // RWX to RX is no transition either: nothing became W or X.
    assert!(step(&mut space, mprotect(A + P, 4, RX)).is_empty());
}

#[test]
fn mmap_rwx_anonymous_and_file_backed_code() {
    let mut space = AddressSpace::new();
    // HotSpot's code cache: MAP_FIXED|MAP_ANONYMOUS, RWX.
    let got = step(&mut space, anon(A, 8, RWX));
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].0, got[0].4.clone(), got[0].5.clone()),
        (WxKind::CreatedWx, None, "rwxp".into())
    );
    assert_eq!(got[1].0, WxKind::AnonExec);
    // A library's text: executable, but a file is behind it.
    assert!(step(&mut space, mmap(A + 64 * P, 2, RX, MAP_PRIVATE, file())).is_empty());
    // Shared anonymous memory has no file either.
    let shared = mmap(A + 128 * P, 1, RX, 0x21, Backing::anonymous());
    assert_eq!(step(&mut space, shared)[0].0, WxKind::AnonExec);
}

#[test]
fn one_event_per_kind_over_several_regions() {
    let mut space = AddressSpace::new();
    step(&mut space, anon(A, 2, RW));
    step(&mut space, mmap(A + 2 * P, 1, RW, MAP_PRIVATE, file()));
    step(&mut space, anon(A + 3 * P, 1, PROT_READ));
    // A hole at A + 4P, then RW again.
    step(&mut space, anon(A + 5 * P, 1, RW));
    let got = step(&mut space, mprotect(A, 6, RX));
    assert_eq!(
        got,
        [
            (
                WxKind::WToX,
                A,
                A + 6 * P,
                4 * P,
                Some("rw-p".into()),
                "r-xp".into()
            ),
            (
                WxKind::AnonExec,
                A,
                A + 6 * P,
                4 * P,
                Some("rw-p".into()),
                "r-xp".into()
            ),
        ]
    );
}

#[test]
fn mremap_growth_of_executable_memory_creates_it() {
    let mut space = AddressSpace::new();
    step(&mut space, anon(A, 2, RWX));
    let grow = MemOp::Mremap {
        old_addr: A,
        old_len: 2 * P,
        new_len: 5 * P,
        flags: 1,
        new_addr: A + 100 * P,
    };
    let got = step(&mut space, grow);
    let kinds: Vec<_> = got.iter().map(|g| (g.0, g.1, g.2, g.4.clone())).collect();
    assert_eq!(
        kinds,
        [
            (WxKind::CreatedWx, A + 102 * P, A + 105 * P, None),
            (WxKind::AnonExec, A + 102 * P, A + 105 * P, None)
        ]
    );
    // Shrinking makes nothing.
    let shrink = MemOp::Mremap {
        old_addr: A + 100 * P,
        old_len: 5 * P,
        new_len: P,
        flags: 0,
        new_addr: A + 100 * P,
    };
    assert!(step(&mut space, shrink).is_empty());
}

#[test]
fn the_log_keeps_the_latest_and_counts_all() {
    let mut log = WxLog::default();
    let origin = Origin::seed(1);
    let mut space = AddressSpace::new();
    space.apply(&anon(A, 1, RW));
    for i in 0..WX_LOG_CAPACITY + 10 {
        let prot = if i % 2 == 0 { RX } else { RW };
        let op = mprotect(A, 1, prot);
        log.record(detect(&op, &space).unwrap_or_default(), &origin);
        space.apply(&op);
    }
    assert_eq!(log.events().len(), WX_LOG_CAPACITY);
    let n = (WX_LOG_CAPACITY + 10) as u64 / 2;
    assert_eq!(log.counts().get(WxKind::WToX), n);
    assert_eq!(log.counts().get(WxKind::XToW), n);
    assert_eq!(log.counts().get(WxKind::AnonExec), n);
    assert_eq!(log.counts().get(WxKind::CreatedWx), 0);
    assert!(Arc::ptr_eq(&log.events().last().unwrap().origin, &origin));
    // A view's copy shares the events, and keeps them as they were.
    let view = log.clone();
    log.record(
        detect(&mprotect(A, 1, RX), &space).unwrap_or_default(),
        &origin,
    );
    assert_eq!(view.events().len(), WX_LOG_CAPACITY);
    assert_eq!(view.counts().get(WxKind::WToX), n);
    assert_eq!(log.counts().get(WxKind::WToX), n + 1);
    assert_eq!(
        log.events().last().unwrap().transition.kind,
        WxKind::AnonExec
    );
    assert_eq!(view.events().last().unwrap().transition.kind, WxKind::XToW);
    log.clear_events();
    assert_eq!(log.events().len(), 0);
    assert_eq!(view.events().len(), WX_LOG_CAPACITY);
    assert_eq!(log.counts().get(WxKind::WToX), n + 1, "counts stay");
}

// ---- the page oracle --------------------------------------------------

/// The kinds, restated page by page from the definitions.
fn page_kinds(old: Option<Perms>, new: Perms, no_file: bool) -> Vec<WxKind> {
    let mut kinds = Vec::new();
    let (ow, ox) = old.map_or((false, false), |o| (o.write, o.exec));
    if new.write && new.exec && !(old.is_some() && ow && ox) {
        kinds.push(WxKind::CreatedWx);
    }
    if old.is_some() && ow && !ox && new.exec {
        kinds.push(WxKind::WToX);
    }
    if old.is_some() && ox && !ow && new.write {
        kinds.push(WxKind::XToW);
    }
    if no_file && new.exec && !(old.is_some() && ox) {
        kinds.push(WxKind::AnonExec);
    }
    kinds
}

fn page(i: usize) -> u64 {
    BASE + i as u64 * P
}

/// Per page of the window, the (old, new, no file) of the pages `op`
/// touched, from the models before and after it.
fn touched(
    op: &MemOp,
    before: &AddressSpace,
    after: &AddressSpace,
) -> Vec<(u64, Option<Perms>, Perms, bool)> {
    let in_range = |a: u64, s: u64, e: u64| s <= a && a < e;
    let end = |a: u64, l: u64| a + page_align_up(l);
    (0..PAGES)
        .map(page)
        .filter_map(|a| {
            let now = after.region_at(a)?;
            let was = before.region_at(a).map(|r| r.perms);
            let new_memory = match op {
                MemOp::Mmap { addr, len, .. } => {
                    in_range(a, *addr, end(*addr, *len)).then_some(None)
                }
                MemOp::Mprotect { addr, len, .. } => {
                    (in_range(a, *addr, end(*addr, *len)) && was.is_some()).then_some(was)
                }
                MemOp::Mremap {
                    old_len,
                    new_len,
                    flags,
                    new_addr,
                    ..
                } => {
                    let kept = if flags & MREMAP_DONTUNMAP != 0 {
                        0
                    } else {
                        page_align_up(*old_len)
                    };
                    in_range(a, new_addr + kept, end(*new_addr, *new_len)).then_some(None)
                }
                _ => None,
            }?;
            Some((a, new_memory, now.perms, no_file(now)))
        })
        .collect()
}

/// Whether the kernel would accept `op` on `before` as the model takes it.
fn valid(op: &MemOp, before: &AddressSpace) -> bool {
    match op {
        MemOp::Mremap {
            old_addr,
            old_len,
            new_len,
            new_addr,
            ..
        } => {
            // The source lies in one VMA; growing in place needs room.
            let Some(source) = before.region_at(*old_addr) else {
                return false;
            };
            let old_end = old_addr + page_align_up(*old_len);
            let new_end = new_addr + page_align_up(*new_len);
            old_end <= source.end
                && (new_addr != old_addr || before.regions_in(old_end, new_end).next().is_none())
        }
        _ => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn events_are_the_pages_changes_summed(
        prefix in prop::collection::vec(any_op(), 0..20),
        op in any_op(),
    ) {
        let mut before = start();
        for p in &prefix {
            before.apply(p);
        }
        prop_assume!(valid(&op, &before));
        let found = detect(&op, &before).unwrap_or_default();
        let mut after = before.clone();
        after.apply(&op);
        let mut expected: Vec<WxTransition> = Vec::new();
        for kind in WxKind::ALL {
            let pages: Vec<_> = touched(&op, &before, &after)
                .into_iter()
                .filter(|(_, old, new, nf)| page_kinds(*old, *new, *nf).contains(&kind))
                .collect();
            if let (Some(first), Some(last)) = (pages.first(), pages.last()) {
                expected.push(WxTransition {
                    kind,
                    start: first.0,
                    end: last.0 + P,
                    bytes: pages.len() as u64 * P,
                    old: first.1,
                    new: first.2,
                });
            }
        }
        let got: Vec<WxTransition> = found.iter().cloned().collect();
        prop_assert_eq!(got, expected, "{:?} on {:?}", op, before);
    }
}

#[test]
fn the_view_names_the_call_site_as_object_plus_offset() {
    let mut space = AddressSpace::new();
    space.apply(&mmap(0x1000, 1, RX, MAP_PRIVATE, file()));
    space.apply(&anon(A, 1, RW));
    let mut interner = crate::origin::Interner::default();
    let origin = Arc::new(Origin {
        cause: crate::origin::Cause::Syscall(crate::events::Syscall::Mprotect),
        ts_ns: 5,
        tid: 9,
        call_site: crate::origin::CallSite::normalize(&space, 0x1234, &mut interner),
        stack_id: None,
    });
    let mut log = WxLog::default();
    log.record(
        detect(&mprotect(A, 1, RX), &space).unwrap_or_default(),
        &origin,
    );
    let view = WxEventView::new(7, "jit", Some(0), log.events().next().unwrap());
    assert_eq!(
        (view.start.as_str(), view.end.as_str()),
        ("0x7f0000000000", "0x7f0000001000")
    );
    assert_eq!(view.range(), (A, A + P));
    assert_eq!(
        (view.syscall.as_str(), view.tid, view.ts_ns),
        ("mprotect", 9, 5)
    );
    let site = view.call_site.unwrap();
    assert_eq!(site.short(), "libx.so+0x234");
    let named = CallSiteView {
        symbol: Some("emit".into()),
        ..site
    };
    assert_eq!(named.short(), "emit (libx.so+0x234)");
}
