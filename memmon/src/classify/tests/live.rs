//! Classifying this test process's own live layout.

use std::collections::HashMap;

use super::*;
use crate::elf::read_elf;
use crate::model::BrkState;

/// A minimal /proc/self/maps reader (the real parser lives elsewhere).
fn own_space() -> AddressSpace {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut regions = Vec::new();
    let (mut heap, mut stack) = (None, None);
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (lo, hi) = f[0].split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(lo, 16).unwrap(),
            u64::from_str_radix(hi, 16).unwrap(),
        );
        let path = f.get(5..).map(|p| p.join(" ")).unwrap_or_default();
        let backing = match path.as_str() {
            "" | "[heap]" | "[stack]" => Backing::anonymous(),
            p if p.starts_with("[anon:") => Backing::Anonymous {
                name: Some(p[6..p.len() - 1].into()),
            },
            p if p.starts_with('[') => Backing::Special { name: p.into() },
            p => Backing::File {
                path: p.into(),
                dev_major: 0,
                dev_minor: 0,
                inode: f[4].parse().unwrap(),
            },
        };
        match path.as_str() {
            "[heap]" => heap = Some((start, end)),
            "[stack]" => stack = Some(end - 8),
            _ => {}
        }
        regions.push(Region {
            start,
            end,
            perms: Perms::parse(f[1]).unwrap(),
            offset: u64::from_str_radix(f[2], 16).unwrap(),
            backing,
            map_stack: false,
            grows_down: false,
        });
    }
    let mut space = AddressSpace::from_regions(regions);
    space.brk = heap.map(|(start_brk, brk)| BrkState {
        start_brk,
        brk,
        exact: false,
    });
    space.start_stack = stack;
    space
}

#[test]
fn own_live_layout() {
    let space = own_space();
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let exe = exe.to_string_lossy().into_owned();
    let mut elfs = HashMap::new();
    elfs.insert(exe.clone(), read_elf("/proc/self/exe".as_ref()).unwrap());
    let libc = crate::testutil::mapped_library("libc.so.6");
    if let Some(libc) = &libc {
        elfs.insert(libc.clone(), read_elf(libc.as_ref()).unwrap());
    }
    let local = 0u8;
    let mut sps = thread_stack_pointers(std::process::id());
    sps.push(&local as *const u8 as u64);
    let c = classify(&ClassifyInput {
        space: &space,
        exe: Some(&exe),
        elfs: &elfs,
        thread_stack_pointers: &sps,
        probe: None,
    });
    assert_eq!(c.regions.len(), space.region_count());
    let of = |object: &str, kind| {
        c.regions
            .iter()
            .any(|r| r.object.as_deref() == Some(object) && r.kind == kind)
    };
    assert!(of(&exe, RegionKind::Text), "{:#?}", c.regions);
    assert!(of(&exe, RegionKind::Data), "{:#?}", c.regions);
    assert!(of(&exe, RegionKind::Rodata), "{:#?}", c.regions);
    if let Some(libc) = &libc {
        assert!(of(libc, RegionKind::Text));
        assert!(of(libc, RegionKind::Data));
    }
    assert!(c.exe_load_bias.is_some());
    assert!(c.regions.iter().any(|r| r.kind == RegionKind::Stack));
    // Tests run on a spawned thread (or, single-threaded, on main).
    let here = c
        .regions
        .iter()
        .find(|r| r.start <= &local as *const u8 as u64 && (&local as *const u8 as u64) < r.end)
        .unwrap();
    assert!(
        matches!(here.kind, RegionKind::ThreadStack | RegionKind::Stack),
        "{here:?}"
    );
    let text = c
        .regions
        .iter()
        .find(|r| r.object.as_deref() == Some(&exe) && r.kind == RegionKind::Text)
        .unwrap();
    assert!(text.sections.iter().any(|s| s == ".text"));
}
