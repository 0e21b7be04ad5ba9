//! A daemon killed with `kill -9` in the middle of churn leaves no kernel
//! object behind (nothing pinned, every program and map freed), and a
//! successor on the same socket converges on /proc while the churn goes
//! on. With the real daemon and the real kernel programs.
//!
//! Run as root: `cargo test -p memmon --test restart` (about half a
//! minute). `bpftool` must be installed (`cargo xtask setup` installs it).

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{Daemon, Stopped, compiled, group_members, require_bpf, signal};

/// Kernel object ids (programs, maps) a process holds open, from the
/// `prog_id:`/`map_id:` lines of its /proc/PID/fdinfo entries.
#[derive(Debug, Default)]
struct BpfIds {
    progs: BTreeSet<u64>,
    maps: BTreeSet<u64>,
}

fn bpf_ids_held_by(pid: i32) -> BpfIds {
    let mut ids = BpfIds::default();
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for entry in entries.flatten() {
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            let mut parts = line.split(':');
            let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(id) = value.trim().parse() else {
                continue;
            };
            match key {
                "prog_id" => ids.progs.insert(id),
                "map_id" => ids.maps.insert(id),
                _ => false,
            };
        }
    }
    ids
}

/// `bpftool {prog|map} show --json`: id -> name (bpftool shows at most 15
/// bytes of a name).
fn bpftool_show(what: &str) -> BTreeMap<u64, String> {
    let out = Command::new("bpftool")
        .args([what, "show", "--json"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run bpftool ({e}): install it (`cargo xtask setup` does, Debian package bpftool)")
        });
    assert!(
        out.status.success(),
        "bpftool {what} show failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("bpftool prints JSON");
    list.as_array()
        .expect("a JSON array")
        .iter()
        .filter_map(|o| {
            Some((
                o["id"].as_u64()?,
                o["name"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// memmon's program names (bpftool shows at most 15 bytes of them).
fn programs() -> impl Iterator<Item = &'static str> {
    memmon_common::tracepoints::PROGRAMS.iter().map(|p| p.name)
}
const MAPS: [&str; 3] = ["EVENTS", "COUNTERS", "LOST_PIDS"];

fn truncated(name: &str) -> &str {
    &name[..name.len().min(15)]
}

/// Whether bpftool's `shown` name is `name`: in full (newer bpftool reads
/// program names from BTF) or cut to the kernel's 15 bytes.
fn same_name(shown: &str, name: &str) -> bool {
    shown == name || shown == truncated(name)
}

/// Of `held`, the programs and maps the kernel still lists, with names.
fn still_listed(held: &BpfIds) -> Vec<String> {
    let progs = bpftool_show("prog");
    let maps = bpftool_show("map");
    let mut left: Vec<String> = held
        .progs
        .iter()
        .filter_map(|id| progs.get(id).map(|n| format!("prog {id} {n}")))
        .collect();
    left.extend(
        held.maps
            .iter()
            .filter_map(|id| maps.get(id).map(|n| format!("map {id} {n}"))),
    );
    left
}

/// What a running daemon holds: all of memmon's programs and maps, named
/// as bpftool shows them.
fn check_held(daemon: &Daemon) -> BpfIds {
    let held = bpf_ids_held_by(daemon.pid());
    let progs = bpftool_show("prog");
    let maps = bpftool_show("map");
    let prog_names: BTreeSet<&str> = held
        .progs
        .iter()
        .filter_map(|id| progs.get(id).map(String::as_str))
        .collect();
    let map_names: BTreeSet<&str> = held
        .maps
        .iter()
        .filter_map(|id| maps.get(id).map(String::as_str))
        .collect();
    for name in programs() {
        assert!(
            prog_names.iter().any(|shown| same_name(shown, name)),
            "the daemon holds no program named {name}: {prog_names:?}"
        );
    }
    for name in MAPS {
        assert!(
            map_names.iter().any(|shown| same_name(shown, name)),
            "the daemon holds no map named {name}: {map_names:?}"
        );
    }
    held
}

/// Waits until the kernel has freed every object of `held`; how long it took.
fn wait_released(held: &BpfIds, whose: &str) -> Duration {
    let since = Instant::now();
    loop {
        let left = still_listed(held);
        if left.is_empty() {
            return since.elapsed();
        }
        if since.elapsed() > Duration::from_secs(10) {
            panic!("{whose} is gone, but the kernel still lists its objects 10 s later: {left:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Nothing of memmon's is pinned in the BPF filesystem.
fn assert_nothing_pinned() {
    let mut pinned = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from("/sys/fs/bpf")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains("memmon")
                || programs().chain(MAPS).any(|n| name.contains(truncated(n)))
            {
                pinned.push(path.display().to_string());
            }
        }
    }
    assert!(
        pinned.is_empty(),
        "memmon objects pinned in bpffs: {pinned:?}"
    );
}

#[test]
fn a_daemon_killed_mid_churn_leaves_nothing_behind_and_its_successor_converges() {
    if !require_bpf() {
        return;
    }
    assert_nothing_pinned();
    let (_dir, rchurn) = compiled("rchurn", &[]);

    let mut first = Daemon::start();
    let held_first = check_held(&first);
    let churn = Stopped::spawn(&rchurn, &["3"]);
    let pgrp = churn.pid;
    thread::sleep(Duration::from_millis(1500));
    assert!(first.alive(), "the first daemon died under churn");
    first.kill9();
    let freed_first = wait_released(&held_first, "the kill -9'd daemon");
    assert_nothing_pinned();

    // A successor on the same socket path (the dead one's socket file is
    // still there), seeded while the churn goes on.
    let second = Daemon::start_in(first.dir(), &[]);
    let held_second = check_held(&second);
    thread::sleep(Duration::from_millis(1500));

    // Freeze the churn: every member stops where it is, between syscalls.
    assert!(
        signal(-(pgrp as i32), libc::SIGSTOP),
        "SIGSTOP to group {pgrp}"
    );
    let frozen = Instant::now();
    let members = loop {
        let members = group_members(pgrp);
        if members.iter().all(|(_, s)| matches!(s, 'T' | 'Z')) {
            break members;
        }
        assert!(
            frozen.elapsed() < Duration::from_secs(10),
            "group {pgrp} did not stop: {members:?}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let stopped: Vec<u32> = members
        .iter()
        .filter(|(_, s)| *s == 'T')
        .map(|(p, _)| *p)
        .collect();
    assert!(
        stopped.len() >= 4,
        "expected the churn's top process and 3 workers stopped: {members:?}"
    );
    let deadline = frozen + Duration::from_secs(10);
    let mut slowest = Duration::ZERO;
    for &pid in &stopped {
        match second.verify_until(pid, deadline) {
            Ok(_) => slowest = slowest.max(frozen.elapsed()),
            Err((_, report)) => second.verify_failed(pid, "(frozen churn)", &report),
        }
    }

    drop(second);
    let freed_second = wait_released(&held_second, "the SIGTERM'd daemon");
    assert_nothing_pinned();
    eprintln!(
        "restart: first daemon held {} programs / {} maps, all freed {:.2} s after kill -9; \
         {} frozen churn processes agree with /proc {:.2} s after SIGSTOP; second daemon's \
         objects freed {:.2} s after SIGTERM",
        held_first.progs.len(),
        held_first.maps.len(),
        freed_first.as_secs_f64(),
        stopped.len(),
        slowest.as_secs_f64(),
        freed_second.as_secs_f64()
    );
    drop(churn); // SIGKILL to the whole group
}
