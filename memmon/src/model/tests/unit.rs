//! Worked examples of each operation, checked through what /proc would show.

use crate::model::ops::{MREMAP_DONTUNMAP, MREMAP_MAYMOVE, MemOp};
use crate::model::{AddressSpace, Backing, BrkState, PAGE_SIZE as P};

/// `start-end perms path @offset` for every region, as /proc would name it.
fn show(space: &AddressSpace) -> Vec<String> {
    space
        .regions()
        .map(|r| {
            let offset = if r.backing.is_file() {
                format!(" @{:#x}", r.offset)
            } else {
                String::new()
            };
            format!(
                "{:x}-{:x} {} {:?}{offset}",
                r.start,
                r.end,
                r.perms,
                space.display_path(r)
            )
        })
        .collect()
}

fn lib() -> Backing {
    Backing::File {
        path: "/usr/lib/a b.so".into(),
        dev_major: 8,
        dev_minor: 1,
        inode: 77,
    }
}

#[test]
fn mmap_kinds() {
    let mut s = AddressSpace::new();
    s.mmap(0x10000, 1, 3, 0x22, Backing::anonymous(), 0);
    s.mmap(0x20000, 0x2000, 1, 0x21, Backing::anonymous(), 0x5000);
    s.mmap(0x30000, 0x2000, 5, 0x02, lib(), 0x3000);
    s.mmap(0x40000, 0x1000, 3, 0x03, lib(), 0);
    s.mmap(0x50000, 0x1000, 3, 0x22 | 0x20000, Backing::anonymous(), 0);
    assert_eq!(
        show(&s),
        [
            "10000-11000 rw-p \"\"",
            "20000-22000 r--s \"/dev/zero (deleted)\" @0x0",
            "30000-32000 r-xp \"/usr/lib/a b.so\" @0x3000",
            "40000-41000 rw-s \"/usr/lib/a b.so\" @0x0",
            "50000-51000 rw-p \"\"",
        ]
    );
    assert!(s.region_at(0x50000).unwrap().map_stack);
    // MAP_FIXED over the middle of the file mapping.
    s.mmap(0x30000 + P, P, 3, 0x32, Backing::anonymous(), 0);
    assert_eq!(
        show(&s)[2..4],
        [
            "30000-31000 r-xp \"/usr/lib/a b.so\" @0x3000",
            "31000-32000 rw-p \"\""
        ]
    );
}

#[test]
fn munmap_and_mprotect_split_and_remerge() {
    let mut s = AddressSpace::new();
    s.mmap(0x10000, 8 * P, 5, 0x02, lib(), 0);
    s.munmap(0x12000, P);
    s.mprotect(0x10000, 0x10000, 1);
    assert_eq!(
        show(&s),
        [
            "10000-12000 r--p \"/usr/lib/a b.so\" @0x0",
            "13000-18000 r--p \"/usr/lib/a b.so\" @0x3000"
        ]
    );
    s.mprotect(0x14000, P, 3);
    assert_eq!(s.region_count(), 4);
    s.mprotect(0x14000, P, 1);
    assert_eq!(s.region_count(), 2, "splits merge back once equal");
}

#[test]
fn brk_grows_and_shrinks_the_heap() {
    let mut s = AddressSpace::new();
    s.apply(&MemOp::Brk { brk: 0x600010 });
    assert_eq!(
        s.brk,
        Some(BrkState {
            start_brk: 0x600010,
            brk: 0x600010,
            exact: true
        })
    );
    assert_eq!(s.region_count(), 0);
    s.apply(&MemOp::Brk { brk: 0x623456 });
    assert_eq!(show(&s), ["601000-624000 rw-p \"[heap]\""]);
    s.apply(&MemOp::Brk { brk: 0x602000 });
    assert_eq!(show(&s), ["601000-602000 rw-p \"[heap]\""]);
    assert_eq!(s.brk.unwrap().brk, 0x602000);
}

#[test]
fn heap_inferred_from_snapshot_grows_by_pages() {
    let mut s = AddressSpace::new();
    s.mmap(0x600000, 0x21000, 3, 0x22, Backing::anonymous(), 0);
    s.brk = Some(BrkState {
        start_brk: 0x600000,
        brk: 0x621000,
        exact: false,
    });
    s.set_brk(0x620800);
    assert_eq!(
        show(&s),
        ["600000-621000 rw-p \"[heap]\""],
        "same page: nothing unmapped"
    );
    s.set_brk(0x630000);
    assert_eq!(show(&s), ["600000-630000 rw-p \"[heap]\""]);
}

#[test]
fn mremap_grow_in_place_continues_offsets() {
    let mut s = AddressSpace::new();
    s.mmap(0x10000, 2 * P, 1, 0x02, lib(), 0x4000);
    s.mremap(0x10000, 2 * P, 5 * P, MREMAP_MAYMOVE, 0x10000);
    assert_eq!(show(&s), ["10000-15000 r--p \"/usr/lib/a b.so\" @0x4000"]);
    s.mremap(0x10000, 5 * P, P, 0, 0x10000);
    assert_eq!(show(&s), ["10000-11000 r--p \"/usr/lib/a b.so\" @0x4000"]);
}

#[test]
fn mremap_move_and_dontunmap() {
    let mut s = AddressSpace::new();
    s.mmap(0x10000, 2 * P, 1, 0x02, lib(), 0x4000);
    s.mmap(0x40000, 8 * P, 3, 0x22, Backing::anonymous(), 0);
    s.mremap(0x10000, 2 * P, 3 * P, MREMAP_MAYMOVE, 0x40000 + P);
    assert_eq!(
        show(&s),
        [
            "40000-41000 rw-p \"\"",
            "41000-44000 r--p \"/usr/lib/a b.so\" @0x4000",
            "44000-48000 rw-p \"\"",
        ]
    );
    // Replayed after the fact: the source is gone, nothing changes.
    let before = s.clone();
    s.mremap(0x10000, 2 * P, 3 * P, MREMAP_MAYMOVE, 0x40000 + P);
    assert_eq!(s, before);

    s.mremap(
        0x44000,
        2 * P,
        2 * P,
        MREMAP_MAYMOVE | MREMAP_DONTUNMAP,
        0x90000,
    );
    assert_eq!(
        show(&s)[2..],
        ["44000-48000 rw-p \"\"", "90000-92000 rw-p \"\""]
    );
}

#[test]
fn moved_heap_is_no_longer_heap() {
    let mut s = AddressSpace::new();
    s.set_brk(0x600000);
    s.set_brk(0x602000);
    s.mremap(0x600000, 2 * P, 2 * P, MREMAP_MAYMOVE, 0x900000);
    assert_eq!(show(&s), ["900000-902000 rw-p \"\""]);
}

#[test]
fn stack_does_not_merge_with_plain_anonymous_memory() {
    let mut s = AddressSpace::new();
    s.mmap(0x7ff000, 4 * P, 3, 0x22 | 0x100, Backing::anonymous(), 0);
    s.start_stack = Some(0x801000);
    s.mmap(0x7fe000, P, 3, 0x22, Backing::anonymous(), 0);
    assert_eq!(
        show(&s),
        ["7fe000-7ff000 rw-p \"\"", "7ff000-803000 rw-p \"[stack]\""]
    );
}

#[test]
fn shm_detach_removes_the_segment_only() {
    let shm = Backing::File {
        path: "/SYSV00000000 (deleted)".into(),
        dev_major: 0,
        dev_minor: 1,
        inode: 9,
    };
    let mut s = AddressSpace::new();
    s.mmap(0x10000, 4 * P, 3, 0x01, shm.clone(), 0);
    s.mprotect(0x11000, P, 1);
    s.mmap(0x14000, P, 3, 0x01, shm.clone(), 0);
    s.apply(&MemOp::ShmDetach { addr: 0x11000 });
    assert_eq!(s.region_count(), 4, "not the start of an attachment");
    s.apply(&MemOp::ShmDetach { addr: 0x10000 });
    assert_eq!(
        show(&s),
        ["14000-15000 rw-s \"/SYSV00000000 (deleted)\" @0x0"]
    );
}

#[test]
fn anon_names() {
    let mut s = AddressSpace::new();
    s.mmap(0x10000, 4 * P, 3, 0x22, Backing::anonymous(), 0);
    s.mmap(0x14000, 2 * P, 3, 0x21, Backing::anonymous(), 0);
    s.mmap(0x16000, P, 3, 0x02, lib(), 0);
    s.set_anon_name(0x11000, 6 * P, Some("pool"));
    assert_eq!(
        show(&s),
        [
            "10000-11000 rw-p \"\"",
            "11000-14000 rw-p \"[anon:pool]\"",
            "14000-16000 rw-s \"[anon_shmem:pool]\"",
            "16000-17000 rw-p \"/usr/lib/a b.so\" @0x0",
        ]
    );
    s.set_anon_name(0x10000, 6 * P, None);
    assert_eq!(
        show(&s)[..2],
        [
            "10000-14000 rw-p \"\"",
            "14000-16000 rw-s \"/dev/zero (deleted)\" @0x0"
        ]
    );
}

/// Under `setarch -R` the heap starts right where the anonymous bss ends:
/// the model merges the two, but /proc shows two VMAs and names only the
/// upper one `[heap]` (vma_is_initial_heap() is strict).
#[test]
fn bss_right_below_an_unrandomized_heap_is_not_heap() {
    let mut space = AddressSpace::new();
    space.brk = Some(BrkState {
        start_brk: 0x10000,
        brk: 0x10000,
        exact: true,
    });
    use crate::model::ops::{MAP_ANONYMOUS, MAP_PRIVATE};
    space.mmap(
        0x8000,
        0x8000,
        3,
        MAP_PRIVATE | MAP_ANONYMOUS | 0x10,
        Backing::anonymous(),
        0,
    );
    space.set_brk(0x12000);
    let vmas: Vec<(u64, u64, String)> = space
        .vmas()
        .map(|r| (r.start, r.end, space.display_path(&r)))
        .collect();
    assert_eq!(
        vmas,
        vec![
            (0x8000, 0x10000, String::new()),
            (0x10000, 0x12000, "[heap]".to_owned())
        ]
    );
}

/// Found by the torture test: shmdt detaches what is left of a segment
/// whose first pages are gone, and only SysV segments.
#[test]
fn shm_detach_finds_the_segment_like_the_kernel() {
    let shm = Backing::File {
        path: "/SYSV00000000 (deleted)".into(),
        dev_major: 0,
        dev_minor: 1,
        inode: 9,
    };
    let mut s = AddressSpace::new();
    s.mmap(0x10000, 4 * P, 3, 0x01, shm.clone(), 0);
    s.munmap(0x10000, P);
    s.mprotect(0x12000, P, 1);
    s.mmap(0x20000, P, 3, 0x01, lib(), 0);
    s.apply(&MemOp::ShmDetach { addr: 0x10000 });
    assert!(
        show(&s).iter().all(|r| !r.contains("SYSV")),
        "{:?}",
        show(&s)
    );
    // A plain file at offset 0 is not a segment.
    s.apply(&MemOp::ShmDetach { addr: 0x20000 });
    assert_eq!(s.region_count(), 1);
}
