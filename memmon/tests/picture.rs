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

use support::{Stopped, TempDir, compile, maps_of, maps_range, memmon, shared_daemon};

/// The fixture stopped at `ready`, agreed on by the daemon.
fn start(daemon: &support::Daemon) -> (TempDir, Stopped) {
    let dir = TempDir::new("picture");
    let program = compile(&dir, "picture", &[]);
    let data = dir.path().join("picture.dat");
    fs::write(&data, vec![7u8; 16 * 4096]).expect("write the mapped file");
    let mut run = Stopped::spawn(&program, &[data.to_str().unwrap()]);
    run.checkpoint("ready");
    daemon.assert_verified(run.pid, "picture: ready");
    (dir, run)
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
    let (_dir, run) = start(daemon);
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
    let ranges = maps_ranges(run.pid);
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

    // Every region is drawn: a band line at its high address that is not
    // a gap; and nothing else is.
    let mut drawn: Vec<u64> = lines
        .iter()
        .filter_map(|l| band_line(l))
        .filter(|(_, rest)| !rest.contains("│ gap ") && !rest.contains(" regions: "))
        .map(|(addr, _)| addr)
        .collect();
    drawn.sort_unstable();
    let mut ends: Vec<u64> = ranges.iter().map(|r| r.1).collect();
    ends.sort_unstable();
    assert_eq!(drawn, ends, "drawn bands vs /proc/{pid}/maps:\n{text}");
    run.resume_and_finish();
}

#[test]
fn collapsed_bands_count_the_regions_they_hold() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let (_dir, run) = start(daemon);
    let pid = run.pid.to_string();
    // Few bands: most of the process collapses.
    let text = memmon(None, daemon.socket(), &["map", &pid, "--bands", "8"])
        .ok()
        .to_owned();
    let ranges = maps_ranges(run.pid);
    // Each band line (and the bottom line) with the next one's address
    // below it.
    let bands: Vec<(u64, &str)> = text
        .lines()
        .filter(|l| !l.contains("program break"))
        .filter_map(|l| {
            let (addr, rest) = l.split_once(" │").or_else(|| l.split_once(" └"))?;
            Some((hex_word(addr)?, rest))
        })
        .collect();
    assert!(bands.len() > 1, "{text}");
    let (mut drawn, mut counted, mut collapsed) = (0, 0, 0);
    for pair in bands.windows(2) {
        let ((top, rest), (bottom, _)) = (pair[0], pair[1]);
        let inside = ranges
            .iter()
            .filter(|r| bottom <= r.0 && r.1 <= top)
            .count();
        if let Some((_, tail)) = rest.split_once("│ ") {
            if let Some((n, _)) = tail.trim_start().split_once(" regions: ") {
                let n: usize = n.trim().parse().unwrap_or_else(|_| panic!("{rest}"));
                assert_eq!(n, inside, "band {top:#x}..{bottom:#x}: {rest}");
                // The kinds' counts add up to the band's.
                let by_kind: usize = tail
                    .split(" regions: ")
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .filter_map(|p| p.split_whitespace().next()?.parse::<usize>().ok())
                    .sum();
                assert_eq!(by_kind, n, "{rest}");
                counted += n;
                collapsed += 1;
            } else if !tail.trim_start().starts_with("gap ") {
                assert_eq!(inside, 1, "band {top:#x}..{bottom:#x}: {rest}");
                drawn += 1;
            }
        }
    }
    assert!(collapsed > 0, "nothing collapsed with --bands 8:\n{text}");
    assert_eq!(drawn + counted, ranges.len(), "{text}");
    run.resume_and_finish();
}

#[test]
fn svg_is_valid_xml_with_a_title_per_region_and_renders_at_its_size() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let (dir, run) = start(daemon);
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
    for (start, end) in maps_ranges(run.pid) {
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
