//! `memmon query --rss`: the smaps numbers per region, as the kernel
//! reports them, read only on request, without stalling scrapes.
//!
//! Run as root: `cargo test -p memmon --test rss`.

mod support;

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use support::{
    MEMMON, Stopped, compiled, hex, query_json, region_at, shared_daemon, wait_stopped, within,
};

const PAGE: u64 = 4096;

/// `(start, end) -> Rss bytes` from /proc/PID/smaps, parsed here
/// independently of the daemon's parser.
fn smaps_rss(pid: u32) -> HashMap<(u64, u64), u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut out = HashMap::new();
    let mut range = None;
    for line in text.lines() {
        if let Some(kb) = line.strip_prefix("Rss:") {
            let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap();
            out.insert(range.expect("Rss after a range"), kb * 1024);
        } else if let Some((r, _)) = line.split_once(' ')
            && let Some((s, e)) = r.split_once('-')
            && let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16))
        {
            range = Some((s, e));
        }
    }
    out
}

fn rss_of(region: &Value) -> u64 {
    region["rss"]["rss"]
        .as_u64()
        .unwrap_or_else(|| panic!("no rss on {region}"))
}

#[test]
fn rss_is_the_touched_pages_and_every_region_equals_smaps() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let (_dir, program) = compiled("touch_pages", &[]);
    let mut run = Stopped::spawn(&program, &["37"]);
    let ready = run.checkpoint("ready");
    daemon.assert_verified(run.pid, "touch_pages: ready");
    let layout = query_json(None, daemon.socket(), run.pid, &["--rss"]);
    let smaps = smaps_rss(run.pid);

    let touched = region_at(&layout, ready.hex("addr"));
    assert_eq!(rss_of(touched), 37 * PAGE, "{touched}");
    assert_eq!(touched["rss"]["private_dirty"], 37 * PAGE, "{touched}");
    assert_eq!(touched["rss"]["swap"], 0, "{touched}");

    // The process is stopped: nothing changes between the two reads.
    let regions = layout["regions"].as_array().unwrap();
    let mut by_kind: HashMap<String, u64> = HashMap::new();
    for region in regions {
        // The kernel may keep apart what the model merges (adjacent
        // anonymous VMAs with different anon_vmas): the entries inside.
        let (start, end) = (hex(&region["start"]), hex(&region["end"]));
        let inside: Vec<_> = smaps
            .iter()
            .filter(|((s, e), _)| start <= *s && *e <= end)
            .collect();
        let covered: u64 = inside.iter().map(|((s, e), _)| e - s).sum();
        assert_eq!(covered, end - start, "smaps entries cover {region}");
        let want: u64 = inside.iter().map(|(_, rss)| **rss).sum();
        assert_eq!(rss_of(region), want, "Rss of {region}");
        *by_kind
            .entry(region["kind"].as_str().unwrap().to_owned())
            .or_default() += want;
    }
    let totals = layout["rss_totals"].as_object().expect("rss_totals");
    for (kind, rss) in &by_kind {
        assert_eq!(totals[kind]["rss"], *rss, "total Rss of {kind}: {totals:?}");
    }
    assert!(
        layout["notes"].as_array().is_none_or(Vec::is_empty),
        "{}",
        layout["notes"]
    );

    // Without --rss, there is none: smaps is read only on request.
    let plain = query_json(None, daemon.socket(), run.pid, &[]);
    assert!(plain["rss_totals"].is_null() && plain["regions"][0]["rss"].is_null());

    // The table shows it too.
    let text = support::memmon(
        None,
        daemon.socket(),
        &["query", &run.pid.to_string(), "--rss"],
    );
    let text = text.ok();
    assert!(text.contains("resident memory (/proc/"), "{text}");
    assert!(
        text.lines().any(|l| l
            .trim_start()
            .starts_with(&format!("{:#x} ", ready.hex("addr")))
            && l.contains("148 KiB")),
        "no row with the touched 148 KiB:\n{text}"
    );
}

#[test]
fn scrapes_answer_within_a_second_while_rss_reads_a_huge_process() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let (_dir, program) = compiled("many_regions", &[]);
    let mut child = Command::new(&program)
        .arg("20000")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready pid="), "many_regions: {line}");
    let pid = child.id();
    wait_stopped(pid, Duration::from_secs(60));
    daemon.assert_verified(pid, "many_regions: ready");
    let query = Command::new(MEMMON)
        .args(["query", &pid.to_string(), "--rss", "--json", "--socket"])
        .arg(daemon.socket())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Scrapes while the query reads smaps (and after, if it was quick).
    for _ in 0..5 {
        within(Duration::from_secs(1), "a scrape during --rss", || {
            daemon.scrape()
        });
    }
    let out = query.wait_with_output().unwrap();
    assert!(out.status.success(), "query --rss failed");
    let layout: Value = serde_json::from_slice(&out.stdout).unwrap();
    let regions = layout["regions"].as_array().unwrap();
    assert!(regions.len() >= 20_000, "{} regions", regions.len());
    assert!(
        regions.iter().all(|r| r["rss"].is_object()),
        "a region without rss"
    );
    let _ = child.kill();
    let _ = child.wait();
}
