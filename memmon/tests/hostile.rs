//! ELF files a local user can craft to make the daemon's work explode:
//! 65,534 sections, or 4,096 PT_LOADs, each mapped 1,000 times by one
//! process. A scrape, `ps` and a query of that process must each finish
//! within 2 s, and the daemon stay under 64 MiB resident.
//!
//! Run as root: `cargo test -p memmon --test hostile`.

mod support;

use std::{fs, time::Duration};

use memmon_testkit::crafted_elf;
use support::{
    Daemon, Stopped, TempDir, compile, listing, query_json, require_bpf, vm_rss, within,
};

const ANSWER_WITHIN: Duration = Duration::from_secs(2);
const RSS_LIMIT: u64 = 64 << 20;
const MAPPINGS: &str = "1000";

/// Maps the crafted file 1,000 times, then checks the daemon's answers
/// and its size.
fn mapped_a_thousand_times(tag: &str, elf: &[u8]) {
    let dir = TempDir::new(tag);
    let map_files = compile(&dir, "map_files", &[]);
    let file = dir.path().join(format!("{tag}.so"));
    fs::write(&file, elf).unwrap();
    let daemon = Daemon::start();
    let arg = format!("r:{}", file.display());
    let mut run = Stopped::spawn(&map_files, &[MAPPINGS, &arg]);
    run.checkpoint("mapped");
    daemon.assert_verified(run.pid, &format!("{tag}: mapped"));
    let socket = daemon.socket();
    for round in 0..3 {
        let (layout, took) = within(ANSWER_WITHIN, &format!("query of {tag}"), || {
            query_json(None, socket, run.pid, &[])
        });
        let regions = layout["regions"].as_array().map_or(0, Vec::len);
        assert!(regions >= 1000, "{regions} regions for 1,000 mappings");
        let (text, took_scrape) = within(ANSWER_WITHIN, &format!("scrape with {tag}"), || {
            daemon.scrape()
        });
        assert!(text.contains("memmon_events_total"));
        let (ps, took_ps) = within(ANSWER_WITHIN, &format!("ps with {tag}"), || {
            listing(None, socket, &["ps", "--json"])
        });
        assert!(
            ps.iter().any(|p| p["pid"] == run.pid),
            "ps does not list pid {}",
            run.pid
        );
        let rss = vm_rss(daemon.pid());
        eprintln!(
            "{tag} round {round}: query {took:?}, scrape {took_scrape:?}, ps {took_ps:?}, \
             daemon RSS {} KiB",
            rss >> 10
        );
        assert!(
            rss < RSS_LIMIT,
            "daemon RSS {} KiB is over {} KiB with {tag} mapped 1,000 times",
            rss >> 10,
            RSS_LIMIT >> 10
        );
    }
    run.resume();
    run.checkpoint("again");
    run.resume_and_finish();
}

#[test]
fn an_elf_with_65534_sections_mapped_1000_times() {
    if !require_bpf() {
        return;
    }
    mapped_a_thousand_times("sections", &crafted_elf(65_534, 1));
}

#[test]
fn an_elf_with_4096_loads_mapped_1000_times() {
    if !require_bpf() {
        return;
    }
    mapped_a_thousand_times("loads", &crafted_elf(8, 4096));
}
