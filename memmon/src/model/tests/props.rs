//! Property tests: the region model against the page-array reference,
//! idempotence, and convergence of replayed suffixes.

use proptest::prelude::*;

use super::reference::{BASE, PAGES, Page, Reference, START_BRK};
use crate::model::ops::{MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE, MemOp};
use crate::model::{AddressSpace, Backing, PAGE_SIZE};

const P: u64 = PAGE_SIZE;

fn page_addr(page: u64) -> u64 {
    BASE + page * P
}

/// `pages` pages expressed as a byte length that rounds up to them.
fn len_of(pages: u64, slop: u64) -> u64 {
    pages * P - slop % P
}

/// File 3 is a SysV segment, which shmdt detaches.
fn file(id: u64) -> Backing {
    let path = if id == 3 {
        "/SYSV00000003 (deleted)".to_owned()
    } else {
        format!("/f{id} (deleted)")
    };
    Backing::File {
        path,
        dev_major: 0,
        dev_minor: 5,
        inode: id,
    }
}

const ALL: u64 = PAGES as u64;

/// A random range within the first `limit` pages: (first page, count).
fn range(limit: u64) -> impl Strategy<Value = (u64, u64)> {
    (0..limit).prop_flat_map(move |a| (Just(a), 1..=(limit - a)))
}

fn mmap(limit: u64) -> impl Strategy<Value = MemOp> {
    (
        range(limit),
        0u64..8,
        0usize..5,
        any::<bool>(),
        1u64..4,
        0u64..8,
        any::<u16>(),
    )
        .prop_map(|((a, n), prot, kind, stack, id, off, slop)| {
            // anon private, anon shared, file private, file shared, shared-validate
            let flags = [0x22, 0x21, 0x02, 0x01, 0x03][kind] | if stack { 0x20000 } else { 0 };
            MemOp::Mmap {
                addr: page_addr(a),
                len: len_of(n, slop as u64),
                prot,
                flags,
                backing: if kind >= 2 {
                    file(id)
                } else {
                    Backing::anonymous()
                },
                offset: off * P,
            }
        })
}

fn munmap(limit: u64) -> impl Strategy<Value = MemOp> {
    (range(limit), any::<u16>()).prop_map(|((a, n), slop)| MemOp::Munmap {
        addr: page_addr(a),
        len: len_of(n, slop as u64),
    })
}

fn mprotect(limit: u64) -> impl Strategy<Value = MemOp> {
    (range(limit), 0u64..8, any::<u16>()).prop_map(|((a, n), prot, slop)| MemOp::Mprotect {
        addr: page_addr(a),
        len: len_of(n, slop as u64),
        prot,
    })
}

fn brk() -> impl Strategy<Value = MemOp> {
    (0u64..20, 0u64..P).prop_map(|(pages, bytes)| MemOp::Brk {
        brk: START_BRK + pages * P + bytes,
    })
}

fn set_anon_name() -> impl Strategy<Value = MemOp> {
    (range(ALL), prop::option::of("[ab]")).prop_map(|((a, n), name)| MemOp::SetAnonName {
        addr: page_addr(a),
        len: n * P,
        name,
    })
}

fn shm_detach() -> impl Strategy<Value = MemOp> {
    (0..PAGES as u64).prop_map(|a| MemOp::ShmDetach { addr: page_addr(a) })
}

/// Valid mremap calls: shrink, grow in place, move (optionally FIXED, maybe
/// resizing) and DONTUNMAP, with non-overlapping source and target.
fn mremap() -> impl Strategy<Value = MemOp> {
    (
        0usize..4,
        range(ALL),
        1u64..=PAGES as u64,
        0..PAGES as u64,
        any::<bool>(),
    )
        .prop_filter_map(
            "target must fit and not overlap the source",
            |(mode, (a, ol), nl, b, fixed)| {
                let op = |new_len: u64, flags: u64, new_addr: u64| MemOp::Mremap {
                    old_addr: page_addr(a),
                    old_len: ol * P,
                    new_len: new_len * P,
                    flags,
                    new_addr: page_addr(new_addr),
                };
                let fixed = if fixed { MREMAP_FIXED } else { 0 };
                let disjoint = |n: u64| b + n <= PAGES as u64 && (b + n <= a || a + ol <= b);
                match mode {
                    0 => (nl < ol).then(|| op(nl, 0, a)),
                    1 => (nl > ol && a + nl <= PAGES as u64).then(|| op(nl, MREMAP_MAYMOVE, a)),
                    2 => disjoint(nl).then(|| op(nl, MREMAP_MAYMOVE | fixed, b)),
                    _ => disjoint(ol).then(|| op(ol, MREMAP_MAYMOVE | MREMAP_DONTUNMAP | fixed, b)),
                }
            },
        )
}

pub(crate) fn any_op() -> impl Strategy<Value = MemOp> {
    prop_oneof![
        3 => mmap(ALL),
        2 => munmap(ALL),
        2 => mprotect(ALL),
        2 => mremap(),
        2 => brk(),
        1 => set_anon_name(),
        1 => shm_detach(),
    ]
}

/// mmap/munmap/mprotect fully determine the state of what they touch.
fn state_setting_op() -> impl Strategy<Value = MemOp> {
    prop_oneof![3 => mmap(ALL), 2 => munmap(ALL), 2 => mprotect(ALL)]
}

/// The same plus brk, kept apart from the heap area. Brk carries only the
/// new break, so its effect depends on the break before it: replaying
/// `munmap(heap page); brk(same break)` onto a state already at that break
/// loses the page. Away from the heap, brk converges like the others.
fn state_setting_op_with_brk() -> impl Strategy<Value = MemOp> {
    let below_heap = (START_BRK - BASE) / P;
    prop_oneof![
        3 => mmap(below_heap),
        2 => munmap(below_heap),
        2 => mprotect(below_heap),
        2 => brk(),
    ]
}

pub(crate) fn start() -> AddressSpace {
    let mut space = AddressSpace::new();
    space.brk = Reference::new().brk;
    space
}

/// Structural invariants: keyed by end, sorted, disjoint, fully merged.
fn check_invariants(space: &AddressSpace) -> Result<(), TestCaseError> {
    let mut prev: Option<&crate::model::Region> = None;
    for (key, region) in &space.regions {
        prop_assert_eq!(*key, region.end);
        prop_assert!(region.start < region.end, "empty region {:?}", region);
        prop_assert!(
            region.start % P == 0 && region.end % P == 0,
            "unaligned {:?}",
            region
        );
        if matches!(region.backing, Backing::Anonymous { .. }) {
            prop_assert_eq!(region.offset, 0);
        }
        if let Some(prev) = prev {
            prop_assert!(prev.end <= region.start, "overlap {:?} {:?}", prev, region);
            prop_assert!(!prev.can_merge(region), "unmerged {:?} {:?}", prev, region);
        }
        prev = Some(region);
    }
    Ok(())
}

fn describe(view: &[Option<Page>]) -> Vec<String> {
    view.iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().map(|p| format!("{i}: {p:?}")))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_reference(ops in prop::collection::vec(any_op(), 1..40)) {
        let mut model = start();
        let mut reference = Reference::new();
        for (step, op) in ops.iter().enumerate() {
            model.apply(op);
            reference.apply(op);
            check_invariants(&model)?;
            let got = Reference::view_of(&model);
            prop_assert_eq!(
                describe(&got), describe(&reference.pages),
                "after step {} {:?}", step, op
            );
            prop_assert_eq!(model.brk, reference.brk);
        }
    }

    #[test]
    fn every_op_is_idempotent(prefix in prop::collection::vec(any_op(), 0..25), op in any_op()) {
        let mut once = start();
        for earlier in &prefix {
            once.apply(earlier);
        }
        once.apply(&op);
        let mut twice = once.clone();
        twice.apply(&op);
        prop_assert_eq!(twice, once);
    }

    #[test]
    fn replayed_suffix_converges(
        ops in prop::collection::vec(state_setting_op(), 1..30),
        cut in any::<prop::sample::Index>(),
    ) {
        check_replay(&ops, cut.index(ops.len()))?;
    }

    #[test]
    fn replayed_suffix_with_brk_converges(
        ops in prop::collection::vec(state_setting_op_with_brk(), 1..30),
        cut in any::<prop::sample::Index>(),
    ) {
        check_replay(&ops, cut.index(ops.len()))?;
    }
}

/// Replaying `ops[cut..]` onto the state all of `ops` produced changes nothing.
fn check_replay(ops: &[MemOp], cut: usize) -> Result<(), TestCaseError> {
    let mut last = start();
    for op in ops {
        last.apply(op);
    }
    let mut replayed = last.clone();
    for op in &ops[cut..] {
        replayed.apply(op);
    }
    prop_assert_eq!(replayed, last);
    Ok(())
}
