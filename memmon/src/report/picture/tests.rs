use proptest::prelude::*;

use super::*;
use crate::{
    report::{GapView, HeapView, hex},
    rules::{AslrStatus, AslrVerdict},
};

/// (start, end, kind, perms, path, object)
type Spec<'a> = (u64, u64, RegionKind, &'a str, &'a str, Option<&'a str>);

fn layout(specs: &[Spec], heap_break: Option<u64>) -> Layout {
    let regions: Vec<RegionView> = specs
        .iter()
        .map(|&(start, end, kind, perms, path, object)| RegionView {
            start: hex(start),
            end: hex(end),
            size: end - start,
            perms: perms.into(),
            offset: 0,
            path: path.into(),
            kind,
            object: object.map(Into::into),
            segment: None,
            sections: vec![],
            note: None,
            rss: None,
            origin: None,
            last_changed: None,
            origins: Vec::new(),
        })
        .collect();
    // As the daemon does, the kernel's half is no gap.
    let gaps = specs
        .windows(2)
        .filter(|w| w[0].1 < w[1].0 && w[1].0 <= 1 << 47)
        .map(|w| GapView {
            start: hex(w[0].1),
            end: hex(w[1].0),
            size: w[1].0 - w[0].1,
        })
        .collect();
    let heap = specs
        .iter()
        .find(|s| s.2 == RegionKind::Heap)
        .zip(heap_break)
        .map(|(h, brk)| HeapView {
            start: hex(h.0),
            end: hex(h.1),
            size: h.1 - h.0,
            program_break: hex(brk),
            requested: brk - h.0,
            top_pad: h.1 - brk,
        });
    Layout {
        pid: 42,
        start_time_ticks: None,
        comm: "seed".into(),
        exe: Some("/tmp/seed".into()),
        uid: Some(0),
        elf: None,
        objects: vec![],
        aslr: AslrVerdict {
            status: AslrStatus::Full,
            reasons: vec![],
            codes: vec![],
        },
        wx: vec![],
        heap,
        mapped_bytes: specs.iter().map(|s| s.1 - s.0).sum(),
        regions,
        gaps,
        totals: Default::default(),
        rss_totals: None,
        notes: vec![],
        events: vec![],
    }
}

const EXE: Option<&str> = Some("/tmp/seed");
const LIBC: Option<&str> = Some("/usr/lib/libc.so.6");

/// The seed's process: executable, heap, a thread, libc, vdso, stack.
fn seed_layout() -> Layout {
    use RegionKind::*;
    let b = 0x5555_5555_4000u64;
    let m = 0x7fff_f7d0_0000u64;
    layout(
        &[
            (b, b + 0x1000, Rodata, "r--p", "/tmp/seed", EXE),
            (b + 0x1000, b + 0x2000, Text, "r-xp", "/tmp/seed", EXE),
            (b + 0x2000, b + 0x3000, Rodata, "r--p", "/tmp/seed", EXE),
            (b + 0x3000, b + 0x4000, Data, "rw-p", "/tmp/seed", EXE),
            (b + 0x4000, b + 0x5000, Bss, "rw-p", "", EXE),
            (b + 0x5000, b + 0x26000, Heap, "rw-p", "[heap]", None),
            (m - 0x80_1000, m - 0x80_0000, Guard, "---p", "", None),
            (m - 0x80_0000, m, ThreadStack, "rw-p", "", None),
            (m, m + 0x28000, Rodata, "r--p", "/usr/lib/libc.so.6", LIBC),
            (
                m + 0x28000,
                m + 0x1bd000,
                Text,
                "r-xp",
                "/usr/lib/libc.so.6",
                LIBC,
            ),
            (
                m + 0x1bd000,
                m + 0x1c0000,
                Data,
                "rw-p",
                "/usr/lib/libc.so.6",
                LIBC,
            ),
            (m + 0x200000, m + 0x204000, Vvar, "r--p", "[vvar]", None),
            (m + 0x204000, m + 0x206000, Vdso, "r-xp", "[vdso]", None),
            (
                0x7fff_fffd_e000,
                0x7fff_ffff_f000,
                Stack,
                "rw-p",
                "[stack]",
                None,
            ),
            (
                0xffff_ffff_ff60_0000,
                0xffff_ffff_ff60_1000,
                Vsyscall,
                "--xp",
                "[vsyscall]",
                None,
            ),
        ],
        Some(b + 0x26000 - 0x800),
    )
}

fn line_of(text: &str, needle: &str, after: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(after)
        .find(|(_, l)| l.contains(needle))
        .map(|(n, _)| n)
        .unwrap_or_else(|| panic!("no line with {needle:?} after line {after}:\n{text}"))
}

#[test]
fn kinds_follow_the_seeds_diagram_top_to_bottom() {
    let layout = seed_layout();
    let picture = Picture::new(&layout, DEFAULT_MAX_BANDS);
    check_accounting(&picture);
    let text = render_text(&picture, false);
    let mut at = 0;
    for needle in [
        "[vsyscall]",
        HOLE,
        "[stack]",
        "[vdso]",
        "── libc.so.6",
        "thread stack",
        "guard page",
        "program break",
        "[heap]",
        "── seed (executable)",
        "  bss",
        "  data",
        "  rodata",
        "  text",
    ] {
        at = line_of(&text, needle, at);
    }
    // The break line sits right on top of the heap's band.
    let brk = line_of(&text, "program break", 0);
    assert!(
        text.lines().nth(brk + 1).unwrap().contains("[heap]"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "colour without a terminal:\n{text}");
    assert!(text.contains("legend: "), "{text}");
}

#[test]
fn colour_is_ansi_and_only_when_asked() {
    let layout = seed_layout();
    let text = render_text(&Picture::new(&layout, DEFAULT_MAX_BANDS), true);
    assert!(text.contains("\x1b[33m"), "the heap is yellow:\n{text}");
}

#[test]
fn heights_are_ordered_by_size() {
    let guard = rows(4096);
    let heap = rows(132 << 10);
    let gap = rows(42 << 40);
    assert!(guard < heap && heap < gap, "{guard} {heap} {gap}");
    assert_eq!(guard, 1.0);
    let band = |size| Band {
        start: 0,
        end: size,
        regions: 0..0,
        gaps: 0..0,
        collapsed: false,
    };
    let (g, h, t) = (
        text::text_rows_for(&band(4096)),
        text::text_rows_for(&band(132 << 10)),
        text::text_rows_for(&band(42 << 40)),
    );
    assert!(g < h && h < t, "{g} {h} {t}");
}

/// `n` small anonymous regions (alternating kinds when `mixed`), with
/// holes, above a heap.
fn many(n: u64, mixed: bool) -> Layout {
    let base = 0x7f00_0000_0000u64;
    let mut specs: Vec<Spec> = vec![(
        0x1000_0000,
        0x1002_1000,
        RegionKind::Heap,
        "rw-p",
        "[heap]",
        None,
    )];
    for k in 0..n {
        let start = base + k * 0x3000;
        let kind = if mixed && k % 2 == 1 {
            RegionKind::Guard
        } else {
            RegionKind::Anon
        };
        specs.push((start, start + 0x1000 * (1 + k % 2), kind, "rw-p", "", None));
    }
    layout(&specs, Some(0x1002_0000))
}

#[test]
fn twenty_thousand_regions_fit_in_a_readable_picture() {
    for mixed in [false, true] {
        let layout = many(20_000, mixed);
        let picture = Picture::new(&layout, DEFAULT_MAX_BANDS);
        assert!(
            picture.bands.len() <= DEFAULT_MAX_BANDS,
            "{} bands",
            picture.bands.len()
        );
        check_accounting(&picture);
        let text = render_text(&picture, false);
        assert!(
            text.lines().count() < 1000,
            "{} lines",
            text.lines().count()
        );
        assert!(text.contains("regions: "), "{text}");
    }
}

#[test]
fn svg_is_xml_with_a_title_per_region_and_gap() {
    let mut layout = many(300, true);
    layout.regions[1].path = "/tmp/<odd> & \"name\"\x1b[31m".into();
    let picture = Picture::new(&layout, 50);
    let svg = render_svg(&picture);
    let doc = roxmltree::Document::parse(&svg).expect("valid XML");
    let titles: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("title"))
        .filter_map(|n| n.text())
        .collect();
    for r in &layout.regions {
        let prefix = format!("{}-{} ", r.start, r.end);
        assert_eq!(
            titles.iter().filter(|t| t.starts_with(&prefix)).count(),
            1,
            "one title for {prefix}"
        );
    }
    assert!(
        titles
            .iter()
            .any(|t| t.contains("/tmp/<odd> & \"name\"\\x1b[31m"))
    );
    let root = doc.root_element();
    assert_eq!(root.attribute("width"), Some("960"));
}

/// Every region is in exactly one band, in address order high to low;
/// bands tile the space without overlap; a collapsed band's counts add up.
fn check_accounting(picture: &Picture) {
    let layout = picture.layout;
    let mut next_region = layout.regions.len();
    let mut next_gap = layout.gaps.len();
    for (k, band) in picture.bands.iter().enumerate() {
        if !band.regions.is_empty() {
            assert_eq!(band.regions.end, next_region, "band {k}: {band:?}");
            next_region = band.regions.start;
        }
        if !band.gaps.is_empty() {
            assert_eq!(band.gaps.end, next_gap, "band {k}: {band:?}");
            next_gap = band.gaps.start;
        }
        if let Some(below) = picture.bands.get(k + 1) {
            assert_eq!(below.end, band.start, "bands {k} and {}", k + 1);
        }
        if band.collapsed {
            let counted: usize = picture.kinds_in(band).values().sum();
            assert_eq!(counted, band.regions.len());
            let label = picture.label(band);
            let said: usize = label.split_whitespace().next().unwrap().parse().unwrap();
            assert_eq!(said, band.regions.len(), "{label}");
        } else {
            // A region, a gap, or the kernel's half (neither).
            assert!(band.regions.len() + band.gaps.len() <= 1, "{band:?}");
        }
    }
    assert_eq!(next_region, 0, "regions left undrawn");
    assert_eq!(next_gap, 0, "gaps left undrawn");
}

proptest! {
    #[test]
    fn every_region_is_drawn_or_in_a_band_that_counts_it(
        parts in prop::collection::vec((0u64..4, 1u64..64, 0u64..3, 0usize..4), 1..400),
        max_bands in 1usize..200,
    ) {
        use RegionKind::*;
        let kinds = [Anon, Guard, ThreadStack, File];
        let mut specs: Vec<Spec> = Vec::new();
        let mut at = 0x1000u64;
        for (hole, pages, big, kind) in parts {
            at += hole * 0x1000;
            let len = (pages * 0x1000) << (big * 10);
            specs.push((at, at + len, kinds[kind], "rw-p", "", None));
            at += len;
        }
        let layout = layout(&specs, None);
        check_accounting(&Picture::new(&layout, max_bands));
    }

    #[test]
    fn taller_means_bigger(a in 0u64..u64::MAX / 2, b in 0u64..u64::MAX / 2) {
        let (small, big) = (a.min(b), a.max(b));
        prop_assert!(rows(small) <= rows(big));
    }
}
