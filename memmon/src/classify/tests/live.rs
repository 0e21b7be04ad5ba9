//! Classifying this test process's own live layout.

use std::{collections::HashMap, sync::Arc};

use super::*;
use crate::elf::read_elf;

/// This process's layout, through the real seeding code.
fn own_space() -> AddressSpace {
    crate::seed::snapshot(std::process::id())
        .expect("own snapshot")
        .space
}

#[test]
fn own_live_layout() {
    let space = own_space();
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let exe = exe.to_string_lossy().into_owned();
    let mut elfs = HashMap::new();
    elfs.insert(
        exe.clone(),
        Arc::new(read_elf("/proc/self/exe".as_ref()).unwrap()),
    );
    let libc = crate::testutil::mapped_library("libc.so.6");
    if let Some(libc) = &libc {
        elfs.insert(libc.clone(), Arc::new(read_elf(libc.as_ref()).unwrap()));
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
