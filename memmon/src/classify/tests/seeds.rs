//! Layouts from the seed documents' /proc/PID/maps listings.

use std::{collections::HashMap, sync::Arc};

use super::fixtures::{empty_pie, libc_219, libc_235, test_non_pie};
use super::*;
use crate::model::BrkState;
use RegionKind::*;

const EMPTY: &str = "/home/nots/Documents/elf-interrogation/examples/empty/empty";
const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";
const LD: &str = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
const THREAD_SP: u64 = 0x7ffff7bfee40;

/// The seed's `empty` under gdb, plus what a threaded malloc user adds:
/// a 132 KiB [heap], a 64 MiB arena reservation, thread stacks with
/// guards, a 208896-byte mmap chunk and shared memory.
fn pie_space() -> AddressSpace {
    let stack = |start, end| Region {
        map_stack: true,
        ..region(start, end, "rw-p", 0, anon())
    };
    let mut space = AddressSpace::from_regions([
        region(0x555555554000, 0x555555555000, "r--p", 0, file(EMPTY)),
        region(0x555555555000, 0x555555556000, "r-xp", 0x1000, file(EMPTY)),
        region(0x555555556000, 0x555555557000, "r--p", 0x2000, file(EMPTY)),
        region(0x555555557000, 0x555555558000, "r--p", 0x2000, file(EMPTY)),
        region(0x555555558000, 0x555555559000, "rw-p", 0x3000, file(EMPTY)),
        region(0x555555559000, 0x55555557a000, "rw-p", 0, anon()),
        // Arena: rw head, PROT_NONE tail, 64 MiB in all.
        region(0x7ffff0000000, 0x7ffff0021000, "rw-p", 0, anon()),
        region(0x7ffff0021000, 0x7ffff4000000, "---p", 0, anon()),
        // A thread found by its stack pointer, one by MAP_STACK.
        region(0x7ffff65fe000, 0x7ffff65ff000, "---p", 0, anon()),
        region(0x7ffff65ff000, 0x7ffff6600000, "rw-p", 0, anon()),
        region(0x7ffff6dff000, 0x7ffff6e00000, "---p", 0, anon()),
        stack(0x7ffff6e00000, 0x7ffff7600000),
        region(0x7ffff7600000, 0x7ffff7601000, "---p", 0, anon()),
        region(0x7ffff7601000, 0x7ffff7c01000, "rw-p", 0, anon()),
        region(0x7ffff7d02000, 0x7ffff7d35000, "rw-p", 0, anon()),
        region(
            0x7ffff7d40000,
            0x7ffff7d41000,
            "rw-s",
            0,
            file("/memfd:wayland-shm (deleted)"),
        ),
        region(
            0x7ffff7d41000,
            0x7ffff7d42000,
            "rw-s",
            0,
            file("/dev/shm/pulse-shm-12"),
        ),
        region(
            0x7ffff7d42000,
            0x7ffff7d43000,
            "rw-s",
            0,
            file("/SYSV00000000 (deleted)"),
        ),
        region(
            0x7ffff7d43000,
            0x7ffff7d44000,
            "rw-s",
            0,
            file("/dev/zero (deleted)"),
        ),
        region(0x7ffff7d44000, 0x7ffff7d45000, "rw-s", 0, anon()),
        region(0x7ffff7d77000, 0x7ffff7d7a000, "rw-p", 0, anon()),
        region(0x7ffff7d7a000, 0x7ffff7da2000, "r--p", 0, file(LIBC)),
        region(0x7ffff7da2000, 0x7ffff7f37000, "r-xp", 0x28000, file(LIBC)),
        region(0x7ffff7f37000, 0x7ffff7f8f000, "r--p", 0x1bd000, file(LIBC)),
        region(0x7ffff7f8f000, 0x7ffff7f93000, "r--p", 0x214000, file(LIBC)),
        region(0x7ffff7f93000, 0x7ffff7f95000, "rw-p", 0x218000, file(LIBC)),
        region(0x7ffff7f95000, 0x7ffff7fa2000, "rw-p", 0, anon()),
        region(
            0x7ffff7fb9000,
            0x7ffff7fbb000,
            "r--p",
            0,
            special("[vvar_vclock]"),
        ),
        region(0x7ffff7fbb000, 0x7ffff7fbd000, "rw-p", 0, anon()),
        region(0x7ffff7fbd000, 0x7ffff7fc1000, "r--p", 0, special("[vvar]")),
        region(0x7ffff7fc1000, 0x7ffff7fc3000, "r-xp", 0, special("[vdso]")),
        region(0x7ffff7fc3000, 0x7ffff7fc5000, "r--p", 0, file(LD)),
        region(0x7ffff7fc5000, 0x7ffff7fef000, "r-xp", 0x2000, file(LD)),
        region(0x7ffff7ffd000, 0x7ffff7fff000, "rw-p", 0x39000, file(LD)),
        region(0x7ffffffde000, 0x7ffffffff000, "rw-p", 0, anon()),
        region(
            0xffffffffff600000,
            0xffffffffff601000,
            "--xp",
            0,
            special("[vsyscall]"),
        ),
    ]);
    space.brk = Some(BrkState {
        start_brk: 0x555555559000,
        brk: 0x555555579a10,
        exact: true,
    });
    space.start_stack = Some(0x7fffffffe4a0);
    space
}

fn pie_elfs() -> ElfMap {
    HashMap::from([
        (EMPTY.into(), Arc::new(empty_pie())),
        (LIBC.into(), Arc::new(libc_235())),
    ])
}

fn classify_pie(probe: Option<MemoryProbe>) -> Classification {
    let (space, elfs) = (pie_space(), pie_elfs());
    classify(&ClassifyInput {
        space: &space,
        exe: Some(EMPTY),
        elfs: &elfs,
        thread_stack_pointers: &[THREAD_SP, 0x7fffffffe000],
        probe,
    })
}

#[test]
fn pie_executable_segments() {
    let c = classify_pie(None);
    assert_eq!(c.exe_load_bias, Some(0x555555554000));
    let expect = [
        (
            0x555555554000,
            Rodata,
            0,
            &[".interp", ".dynsym", ".rela.dyn"][..],
        ),
        (
            0x555555555000,
            Text,
            1,
            &[".init", ".plt", ".text", ".fini"],
        ),
        (
            0x555555556000,
            Rodata,
            2,
            &[".rodata", ".eh_frame_hdr", ".eh_frame"],
        ),
        // The RELRO page: made read-only after relocation, still data.
        (
            0x555555557000,
            Data,
            3,
            &[".init_array", ".fini_array", ".dynamic", ".got"],
        ),
        (0x555555558000, Data, 3, &[".data", ".bss"]),
    ];
    for (start, kind, segment, sections) in expect {
        let r = at(&c, start);
        assert_eq!((r.kind, r.segment), (kind, Some(segment)), "{start:#x}");
        assert_eq!(r.sections, sections, "{start:#x}");
        assert_eq!(r.object.as_deref(), Some(EMPTY));
    }
}

#[test]
fn libc_segments_and_bss() {
    let c = classify_pie(None);
    let kinds: Vec<RegionKind> = [
        0x7ffff7d7a000,
        0x7ffff7da2000,
        0x7ffff7f37000,
        0x7ffff7f8f000,
        0x7ffff7f93000,
        0x7ffff7f95000,
    ]
    .iter()
    .map(|&s| kind_at(&c, s))
    .collect();
    assert_eq!(kinds, [Rodata, Text, Rodata, Data, Data, Bss]);
    let bss = at(&c, 0x7ffff7f95000);
    assert_eq!(bss.object.as_deref(), Some(LIBC));
    assert_eq!(bss.segment, Some(3));
    assert_eq!(bss.sections, [".bss"]);
    assert_eq!(
        at(&c, 0x7ffff7f8f000).sections,
        [".data.rel.ro", ".got", ".got.plt"]
    );
    // ld.so has no parsed ELF here: plain file mappings, still attributed.
    let ld = at(&c, 0x7ffff7fc5000);
    assert_eq!((ld.kind, ld.object.as_deref()), (File, Some(LD)));
}

#[test]
fn heap_arena_stacks_and_specials() {
    let c = classify_pie(None);
    let expect = [
        (0x555555559000, Heap),
        (0x7ffff0000000, Arena),
        (0x7ffff0021000, Arena),
        (0x7ffff65fe000, Anon),
        (0x7ffff65ff000, Anon),
        (0x7ffff6dff000, Guard),
        (0x7ffff6e00000, ThreadStack),
        (0x7ffff7600000, Guard),
        (0x7ffff7601000, ThreadStack),
        (0x7ffff7d02000, MmapChunk),
        (0x7ffff7d77000, Anon),
        (0x7ffff7fb9000, Vvar),
        (0x7ffff7fbd000, Vvar),
        (0x7ffff7fc1000, Vdso),
        (0x7ffffffde000, Stack),
        (0xffffffffff600000, Vsyscall),
    ];
    for (start, kind) in expect {
        assert_eq!(kind_at(&c, start), kind, "{start:#x}");
    }
    for start in (0x7ffff7d40000..0x7ffff7d45000).step_by(0x1000) {
        assert_eq!(kind_at(&c, start), Shm, "{start:#x}");
    }
    assert_eq!(
        c.heap,
        Some(HeapInfo {
            start: 0x555555559000,
            end: 0x55555557a000,
            program_break: 0x555555579a10,
            top_pad_bytes: 0x5f0,
            requested: 0x20a10,
        })
    );
    let totals = totals_by_kind(&c.regions);
    assert_eq!(totals[&Heap], 132 << 10);
    assert_eq!(totals[&Arena], 64 << 20);
    assert_eq!(totals[&MmapChunk], 208896);
    assert_eq!(totals[&Guard], 2 * 4096);
}

#[test]
fn probe_confirms_mmap_chunks() {
    let header = |addr: u64| {
        let mut b = [0u8; 16];
        if addr == 0x7ffff7d02000 {
            b[8..].copy_from_slice(&(208896u64 | 0x2).to_ne_bytes());
        }
        Some(b)
    };
    let c = classify_pie(Some(&header));
    assert_eq!(kind_at(&c, 0x7ffff7d02000), MmapChunk);
    // Same region, header without IS_MMAPPED: not malloc's.
    let zeros = |_: u64| Some([0u8; 16]);
    let c = classify_pie(Some(&zeros));
    assert_eq!(kind_at(&c, 0x7ffff7d02000), Anon);
    // Unreadable memory: fall back to the shape alone.
    let unreadable = |_: u64| None;
    let c = classify_pie(Some(&unreadable));
    assert_eq!(kind_at(&c, 0x7ffff7d02000), MmapChunk);
}

const TEST: &str = "/home/vagrant/c_tests/test";
const LIBC_219: &str = "/lib/x86_64-linux-gnu/libc-2.19.so";

/// The seed's non-PIE `test` after malloc(1000) and malloc(204800): the
/// 208896-byte chunk shows as 221184 bytes, merged with ld.so's mapping.
fn non_pie_space() -> AddressSpace {
    let mut space = AddressSpace::from_regions([
        region(0x00400000, 0x00401000, "r-xp", 0, file(TEST)),
        region(0x00600000, 0x00601000, "r--p", 0, file(TEST)),
        region(0x00601000, 0x00602000, "rw-p", 0x1000, file(TEST)),
        region(0x019a3000, 0x019c4000, "rw-p", 0, anon()),
        region(0x7f3b113ce000, 0x7f3b11589000, "r-xp", 0, file(LIBC_219)),
        region(
            0x7f3b11589000,
            0x7f3b11789000,
            "---p",
            0x1bb000,
            file(LIBC_219),
        ),
        region(
            0x7f3b11789000,
            0x7f3b1178d000,
            "r--p",
            0x1bb000,
            file(LIBC_219),
        ),
        region(
            0x7f3b1178d000,
            0x7f3b1178f000,
            "rw-p",
            0x1bf000,
            file(LIBC_219),
        ),
        region(0x7f3b1178f000, 0x7f3b11794000, "rw-p", 0, anon()),
        region(0x7f3b11972000, 0x7f3b119a8000, "rw-p", 0, anon()),
        region(0x7fff8f747000, 0x7fff8f768000, "rw-p", 0, anon()),
        region(0x7fff8f7fe000, 0x7fff8f800000, "r-xp", 0, special("[vdso]")),
        region(
            0xffffffffff600000,
            0xffffffffff601000,
            "r-xp",
            0,
            special("[vsyscall]"),
        ),
    ]);
    // Only the /proc snapshot: the break is inferred as the heap's end.
    space.brk = Some(BrkState {
        start_brk: 0x019a3000,
        brk: 0x019c4000,
        exact: false,
    });
    space.start_stack = Some(0x7fff8f766000);
    space
}

#[test]
fn non_pie_seed_layout() {
    let space = non_pie_space();
    let elfs = HashMap::from([
        (TEST.into(), Arc::new(test_non_pie())),
        (LIBC_219.into(), Arc::new(libc_219())),
    ]);
    let chunk_header = |addr: u64| {
        let mut b = [0u8; 16];
        if addr == 0x7f3b11972000 {
            b[8..].copy_from_slice(&(208896u64 | 0x2).to_ne_bytes());
        }
        Some(b)
    };
    let c = classify(&ClassifyInput {
        space: &space,
        exe: Some(TEST),
        elfs: &elfs,
        thread_stack_pointers: &[],
        probe: Some(&chunk_header),
    });
    assert_eq!(c.exe_load_bias, Some(0));
    let kinds: Vec<RegionKind> = c.regions.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            Text, Data, Data, Heap, Text, File, Data, Data, Bss, MmapChunk, Stack, Vdso, Vsyscall
        ]
    );
    assert_eq!(at(&c, 0x00601000).sections, [".got.plt", ".data", ".bss"]);
    assert_eq!(at(&c, 0x7f3b11589000).object.as_deref(), Some(LIBC_219));
    assert_eq!(at(&c, 0x7f3b11589000).segment, None);
    let heap = c.heap.unwrap();
    assert_eq!((heap.requested, heap.top_pad_bytes), (135168, 0));
}

#[test]
fn gaps_include_the_127_tib_jump() {
    let g = gaps(&non_pie_space());
    // Below the 47-bit user-space top; above it, only [vsyscall] remains.
    let largest = g
        .iter()
        .filter(|g| g.end <= 1 << 47)
        .max_by_key(|g| g.size)
        .unwrap();
    assert_eq!((largest.start, largest.end), (0x019c4000, 0x7f3b113ce000));
    assert!(largest.size > 127 << 40);
    assert_eq!(
        g[0],
        Gap {
            start: 0x401000,
            end: 0x600000,
            size: 0x1ff000
        }
    );
    // Adjacent regions leave no gap.
    assert!(g.iter().all(|g| g.start != 0x00601000 && g.size > 0));
}
