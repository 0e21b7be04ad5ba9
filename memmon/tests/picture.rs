//! `memmon map` end to end, as root (issue 12): for a fixture with a
//! malloc'd heap, 4 threads with 4 KiB guard pages and a mapped file, the
//! terminal picture names every kind in the seeds' top-to-bottom order,
//! draws the program break at the heap's end and accounts for every region
//! of /proc/PID/maps; `--svg` is valid XML with a title per region and
//! renders with rsvg-convert to a PNG of its stated size.
//!
//! Run as root: `cargo test -p memmon --test picture`.

mod support;

use std::{fs, process::Command};

use serde_json::Value;
use support::{
    Stopped, TempDir, assert_agrees, compile, hex, maps_of, maps_range, memmon, query_json,
    shared_daemon,
};

/// The fixture stopped at `ready`, agreed on by the daemon, and its layout
/// (`query --json`, the reply `map` draws), checked against /proc.
fn start(daemon: &support::Daemon) -> (TempDir, Stopped, Value) {
    let dir = TempDir::new("picture");
    let program = compile(&dir, "picture", &[]);
    let data = dir.path().join("picture.dat");
    fs::write(&data, vec![7u8; 16 * 4096]).expect("write the mapped file");
    let mut run = Stopped::spawn(&program, &[data.to_str().unwrap()]);
    run.checkpoint("ready");
    daemon.assert_verified(run.pid, "picture: ready");
    let layout = query_json(None, daemon.socket(), run.pid, &[]);
    assert_agrees(&layout, &maps_of(run.pid));
    (dir, run, layout)
}

/// The layout's regions as `(start, end)`.
fn regions(layout: &Value) -> Vec<(u64, u64)> {
    layout["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .map(|r| (hex(&r["start"]), hex(&r["end"])))
        .collect()
}

/// Every band of the picture as `(top, bottom, text after the address)`,
/// high to low (the bottom line gives the last band's low end).
fn bands_of(text: &str) -> Vec<(u64, u64, &str)> {
    let lines: Vec<(u64, &str)> = text
        .lines()
        .filter(|l| !l.contains("program break"))
        .filter_map(|l| {
            let (addr, rest) = l.split_once(" │").or_else(|| l.split_once(" └"))?;
            Some((hex_word(addr)?, rest))
        })
        .collect();
    lines.windows(2).map(|w| (w[0].0, w[1].0, w[0].1)).collect()
}

fn is_gap(rest: &str) -> bool {
    rest.contains("│ gap ") || rest.contains("│ kernel's half")
}

/// Every /proc/PID/maps region lies in a band that draws or counts it,
/// never in a gap.
fn assert_proc_regions_drawn(pid: u32, bands: &[(u64, u64, &str)]) {
    for (start, end) in maps_ranges(pid) {
        // Its last byte (the low end of [stack] moves on faults).
        let band = bands
            .iter()
            .find(|b| b.1 < end && end <= b.0)
            .unwrap_or_else(|| panic!("no band holds {start:#x}-{end:#x}"));
        assert!(!is_gap(band.2), "{start:#x}-{end:#x} drawn as {}", band.2);
    }
}

/// `(start, end)` of every maps line.
fn maps_ranges(pid: u32) -> Vec<(u64, u64)> {
    maps_of(pid).lines().filter_map(maps_range).collect()
}

fn hex_word(text: &str) -> Option<u64> {
    u64::from_str_radix(text.trim().strip_prefix("0x")?, 16).ok()
}

/// A band's line: its high address, then the bar.
fn band_line(line: &str) -> Option<(u64, &str)> {
    let (addr, rest) = line.split_once(" │")?;
    Some((hex_word(addr)?, rest))
}

fn line_after(lines: &[&str], needle: &str, after: usize) -> usize {
    (after..lines.len())
        .find(|&n| lines[n].contains(needle))
        .unwrap_or_else(|| {
            panic!(
                "no line with {needle:?} after line {after}:\n{}",
                lines.join("\n")
            )
        })
}

#[test]
fn map_draws_every_kind_in_the_seeds_order_and_accounts_for_every_region() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let (_dir, run, layout) = start(daemon);
    let pid = run.pid.to_string();
    let text = memmon(None, daemon.socket(), &["map", &pid])
        .ok()
        .to_owned();
    assert!(!text.contains('\x1b'), "colour without a terminal:\n{text}");
    let lines: Vec<&str> = text.lines().collect();

    // The seeds' diagram, top to bottom; the mmap area's kinds all sit
    // between the vdso and the heap.
    let vdso = line_after(
        &lines,
        "[vdso]",
        line_after(&lines, "[stack]", line_after(&lines, "[vsyscall]", 0)),
    );
    let brk = line_after(&lines, "program break", vdso);
    for kind in ["thread stack", "guard page", "arena", "file picture.dat"] {
        let at = line_after(&lines, kind, vdso);
        assert!(at < brk, "{kind} is not in the mmap area:\n{text}");
    }
    let heap = line_after(&lines, "[heap]", brk);
    assert_eq!(heap, brk + 1, "the break is not on the heap:\n{text}");
    let mut at = line_after(&lines, "── picture (executable)", heap);
    for kind in ["  bss", "  data", "  rodata", "  text"] {
        at = line_after(&lines, kind, at);
    }
    assert!(lines[at..].iter().any(|l| l.contains("◀ entry")), "{text}");
    let header = lines[1];
    assert!(
        header.contains("load bias 0x") && header.contains("entry 0x") && header.contains("ASLR "),
        "{header}"
    );

    // The program break sits at the heap's end (the heap ends at the
    // break rounded up to a page).
    let (brk_addr, _) = band_line(&lines[brk].replace(" ├", " │")).expect("break address");
    let heap_range = maps_of(run.pid)
        .lines()
        .find(|l| l.ends_with("[heap]"))
        .and_then(maps_range)
        .expect("a [heap] line");
    assert_eq!(
        brk_addr.next_multiple_of(4096),
        heap_range.1,
        "{}",
        lines[brk]
    );
    assert_eq!(band_line(lines[heap]).map(|b| b.0), Some(heap_range.1));

    // Every region is drawn, once, as a band of its own (nothing is
    // collapsed at this size); and nothing else is.
    let bands = bands_of(&text);
    assert!(!text.contains(" regions: "), "{text}");
    let mut drawn: Vec<(u64, u64)> = bands
        .iter()
        .filter(|b| !is_gap(b.2))
        .map(|b| (b.1, b.0))
        .collect();
    drawn.sort_unstable();
    assert_eq!(
        drawn,
        regions(&layout),
        "drawn bands vs the layout:\n{text}"
    );
    assert_proc_regions_drawn(run.pid, &bands);
    run.resume_and_finish();
}

#[test]
fn collapsed_bands_count_the_regions_they_hold() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let (_dir, run, layout) = start(daemon);
    let pid = run.pid.to_string();
    // Few bands: most of the process collapses.
    let text = memmon(None, daemon.socket(), &["map", &pid, "--bands", "8"])
        .ok()
        .to_owned();
    let ranges = regions(&layout);
    let bands = bands_of(&text);
    let (mut drawn, mut counted, mut collapsed) = (0, 0, 0);
    for &(top, bottom, rest) in &bands {
        let inside = ranges
            .iter()
            .filter(|r| bottom <= r.0 && r.1 <= top)
            .count();
        let label = rest.split_once("│ ").map_or("", |(_, l)| l.trim_start());
        if let Some((n, kinds)) = label.split_once(" regions: ") {
            let n: usize = n.trim().parse().unwrap_or_else(|_| panic!("{rest}"));
            assert_eq!(n, inside, "band {top:#x}..{bottom:#x}: {rest}");
            // The kinds' counts add up to the band's.
            let by_kind: usize = kinds
                .split(',')
                .filter_map(|p| p.split_whitespace().next()?.parse::<usize>().ok())
                .sum();
            assert_eq!(by_kind, n, "{rest}");
            counted += n;
            collapsed += 1;
        } else if !is_gap(rest) {
            assert_eq!(inside, 1, "band {top:#x}..{bottom:#x}: {rest}");
            drawn += 1;
        }
    }
    assert!(collapsed > 0, "nothing collapsed with --bands 8:\n{text}");
    assert_eq!(drawn + counted, ranges.len(), "{text}");
    assert_proc_regions_drawn(run.pid, &bands);
    run.resume_and_finish();
}

#[test]
fn svg_is_valid_xml_with_a_title_per_region_and_renders_at_its_size() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let (dir, run, layout) = start(daemon);
    let svg_path = dir.path().join("map.svg");
    let pid = run.pid.to_string();
    memmon(
        None,
        daemon.socket(),
        &["map", &pid, "--svg", svg_path.to_str().unwrap()],
    )
    .ok();
    let svg = fs::read_to_string(&svg_path).expect("the SVG was written");
    let doc = roxmltree::Document::parse(&svg).expect("the SVG is valid XML");
    let titles: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("title"))
        .filter_map(|n| n.text())
        .collect();
    for (start, end) in regions(&layout) {
        let prefix = format!("{start:#x}-{end:#x} ");
        assert_eq!(
            titles.iter().filter(|t| t.starts_with(&prefix)).count(),
            1,
            "one <title> for the region {prefix}"
        );
    }
    let root = doc.root_element();
    let size = |name| -> u32 {
        root.attribute(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("svg {name}"))
    };
    let (width, height) = (size("width"), size("height"));

    let png_path = dir.path().join("map.png");
    let out = Command::new("rsvg-convert")
        .arg("-o")
        .arg(&png_path)
        .arg(&svg_path)
        .output()
        .expect("run rsvg-convert (Debian: librsvg2-bin; `cargo xtask setup`)");
    assert!(
        out.status.success(),
        "rsvg-convert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = fs::read(&png_path).expect("the PNG");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (width, height), "PNG size vs the SVG's");
    run.resume_and_finish();
}
