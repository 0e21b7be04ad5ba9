//! Origins: the call site that made each region (`query --origins`),
//! outstanding bytes per call site (`memmon origins`), steady growers
//! system-wide (`memmon leaks`) and recent changes (`memmon diff`), on a
//! fixture whose every mapping is made by a named function.
//!
//! Run as root: `cargo test -p memmon --test origins`.

mod support;

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use serde_json::Value;
use support::{
    Daemon, Stopped, compiled, hex, memmon, query_json, region_at, require_bpf, shared_daemon,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The origin of the byte at `addr`: the region's, or its part's when the
/// kernel merged memory made by different calls.
fn origin_at(layout: &Value, addr: u64) -> Value {
    let region = region_at(layout, addr);
    let parts = region["origins"].as_array().cloned().unwrap_or_default();
    if parts.is_empty() {
        return region["origin"].clone();
    }
    parts
        .into_iter()
        .find(|p| hex(&p["start"]) <= addr && addr < hex(&p["end"]))
        .map(|p| p["origin"].clone())
        .unwrap_or_else(|| panic!("no part of {region} holds {addr:#x}"))
}

fn symbol(site: &Value) -> &str {
    site["call_site"]["symbol"].as_str().unwrap_or("")
}

/// `memmon origins PID --json`'s sites.
fn sites(socket: &std::path::Path, pid: u32, window: &str) -> Vec<Value> {
    let report = memmon(
        None,
        socket,
        &["origins", &pid.to_string(), "--json", "--window", window],
    )
    .json();
    report["sites"].as_array().cloned().expect("sites")
}

fn bytes_of(sites: &[Value], name: &str) -> u64 {
    sites
        .iter()
        .find(|s| symbol(s) == name)
        .and_then(|s| s["bytes"].as_u64())
        .unwrap_or_else(|| panic!("no call site {name} in {sites:#?}"))
}

/// Everything but leaks, for one build of the fixture.
fn check_build(flags: &[&str]) {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let socket = daemon.socket();
    let (_dir, program) = compiled("origins", flags);
    let mut run = Stopped::spawn(&program, &[]);

    let pool = run.checkpoint("pool").hex("addr");
    daemon.assert_verified(run.pid, "origins: pool");
    let layout = query_json(None, socket, run.pid, &["--origins"]);
    let origin = origin_at(&layout, pool);
    assert_eq!(origin["syscall"], "mmap", "{origin}");
    assert_eq!(symbol(&origin), "make_pool", "{flags:?}: {origin}");
    assert_eq!(
        origin["call_site"]["object"].as_str(),
        program.to_str(),
        "{origin}"
    );
    // Memory made before memmon saw the process says so.
    let exe_text = layout["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "text" && r["path"].as_str() == program.to_str())
        .expect("the fixture's text");
    assert!(
        ["seed", "mmap"].contains(&exe_text["origin"]["syscall"].as_str().unwrap_or("")),
        "{exe_text}"
    );

    run.resume();
    let slabs = run.checkpoint("leaked").num("slabs");
    let all = sites(socket, run.pid, "60s");
    assert_eq!(symbol(&all[0]), "leak_slab", "leak_slab leads: {all:#?}");
    assert_eq!(all[0]["bytes"], slabs * 64 * KIB, "{all:#?}");
    assert_eq!(bytes_of(&all, "make_pool"), 8 * MIB);

    run.resume();
    run.checkpoint("trimmed");
    let all = sites(socket, run.pid, "60s");
    assert_eq!(
        bytes_of(&all, "make_pool"),
        4 * MIB,
        "trim_pool unmapped half"
    );
    assert_eq!(bytes_of(&all, "leak_slab"), slabs * 64 * KIB);
    daemon.assert_verified(run.pid, "origins: trimmed");

    run.resume();
    run.checkpoint("leaking");
    run.resume();
    let changed = run.checkpoint("changed").hex("addr");
    let diff = memmon(
        None,
        socket,
        &["diff", &run.pid.to_string(), "--since", "2s", "--json"],
    )
    .json();
    let changes = diff["changes"].as_array().expect("changes");
    let got: Vec<(&str, u64, u64, &str)> = changes
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap(),
                hex(&c["start"]),
                hex(&c["end"]),
                symbol(c),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("added", changed, changed + 4 * 4096, "map_one"),
            ("protection", changed, changed + 4096, "protect_one"),
            (
                "removed",
                changed + 2 * 4096,
                changed + 4 * 4096,
                "unmap_one"
            ),
        ],
        "{diff:#}"
    );
    run.resume_and_finish();
}

#[test]
fn call_sites_without_frame_pointers() {
    check_build(&["-O2", "-fomit-frame-pointer"]);
}

#[test]
fn call_sites_with_frame_pointers() {
    check_build(&["-O2", "-fno-omit-frame-pointer"]);
}

/// With `--stacks` and frame pointers, the pool's origin carries the whole
/// chain: the libc wrapper, make_pool, then main.
#[test]
fn stacks_reach_main_with_frame_pointers() {
    if !require_bpf() {
        return;
    }
    let daemon = Daemon::start_with(&["--stacks"]);
    let (_dir, program) = compiled("origins", &["-O2", "-fno-omit-frame-pointer"]);
    let mut run = Stopped::spawn(&program, &[]);
    let pool = run.checkpoint("pool").hex("addr");
    daemon.assert_verified(run.pid, "origins --stacks: pool");
    let layout = query_json(None, daemon.socket(), run.pid, &["--origins"]);
    let origin = origin_at(&layout, pool);
    let stack: Vec<&str> = origin["stack"]
        .as_array()
        .unwrap_or_else(|| panic!("no stack: {origin}"))
        .iter()
        .map(|f| f["symbol"].as_str().unwrap_or("?"))
        .collect();
    let at = |name: &str| stack.iter().position(|s| *s == name);
    let (Some(pool_fn), Some(main)) = (at("make_pool"), at("main")) else {
        panic!("make_pool and main in {stack:?}: {origin}");
    };
    assert!(pool_fn < main, "innermost first: {stack:?}");
    drop(run);
}

/// A process that maps and unmaps in a loop: its memory breathes, never grows.
struct Steady(std::process::Child, u32);

impl Steady {
    fn start(program: &std::path::Path) -> Self {
        let mut child = Command::new(program)
            .arg("steady")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn steady");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid = child.id();
        assert!(line.starts_with("steady"), "{line}");
        Steady(child, pid)
    }
}

impl Drop for Steady {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn leaks_names_the_leaking_call_site_and_not_a_steady_process() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let socket = daemon.socket();
    let (_dir, program) = compiled("origins", &["-O2"]);
    let steady = Steady::start(&program);
    let mut run = Stopped::spawn(&program, &[]);
    run.checkpoint("pool");
    run.resume();
    run.checkpoint("leaked");
    run.resume();
    run.checkpoint("trimmed");
    run.resume();
    // 5 s of one 64 KiB slab every 25 ms, then stopped.
    run.checkpoint("leaking");
    let report = memmon(
        None,
        socket,
        &["leaks", "--window", "4s", "--min-growth", "1MiB", "--json"],
    )
    .json();
    let leaks = report["leaks"].as_array().expect("leaks");
    let ours: Vec<&Value> = leaks.iter().filter(|l| l["pid"] == run.pid).collect();
    assert_eq!(ours.len(), 1, "{report:#}");
    assert_eq!(symbol(ours[0]), "leak_slab", "{report:#}");
    assert_eq!(ours[0]["comm"], "origins");
    assert!(
        ours[0]["growth"].as_i64().unwrap() >= MIB as i64,
        "{report:#}"
    );
    assert!(
        leaks.iter().all(|l| l["pid"] != steady.1),
        "the steady process is not a leak: {report:#}"
    );
    let text = memmon(None, socket, &["leaks", "--window", "4s"])
        .ok()
        .to_owned();
    assert!(text.contains("leak_slab"), "{text}");
    run.resume();
    run.checkpoint("changed");
    run.resume_and_finish();
}
