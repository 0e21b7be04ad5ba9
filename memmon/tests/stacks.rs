//! Full user stacks (`stacks = true`, off by default): a fixture built
//! with frame pointers maps memory through main -> outer -> map_here;
//! `memmon trace --stacks` shows the mmap event with a stack id, and the
//! stack the kernel stored for it (read through `bpf::StackTable`) holds
//! return addresses inside `outer` and `main`, resolved with the
//! fixture's own symbol table. A trace without the switch captures none.
//!
//! Run as root: `cargo test -p memmon --test stacks`.

mod support;

use std::{collections::HashMap, process::Command};

use serde_json::Value;
use support::{Daemon, Trace, compiled, metric, output_text, require_bpf};

/// The fixture's mmap length (MARK_LEN in stack_chain.c).
const MARK_LEN: u64 = 7 * 4096;

/// `[start, end)` of each function symbol in `program`, as `nm -S` gives
/// them (link-time addresses).
fn symbols(program: &std::path::Path) -> HashMap<String, (u64, u64)> {
    let out = Command::new("nm")
        .args(["-S", "--defined-only"])
        .arg(program)
        .output()
        .expect("run nm (binutils)");
    assert!(out.status.success(), "nm: {}", output_text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let [value, size, kind, name] = line.split_whitespace().collect::<Vec<_>>()[..] else {
                return None;
            };
            if !kind.eq_ignore_ascii_case("t") {
                return None;
            }
            let value = u64::from_str_radix(value, 16).ok()?;
            let size = u64::from_str_radix(size, 16).ok()?;
            Some((name.to_owned(), (value, value + size)))
        })
        .collect()
}

fn hex(value: &Value) -> u64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The `key=0x...` value on the fixture's first line.
fn printed(line: &str, key: &str) -> u64 {
    let value = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"));
    u64::from_str_radix(value.trim_start_matches("0x"), 16).unwrap()
}

/// The fixture's marked mmap among `events`.
fn marked_mmap(events: &[Value], pid: u32) -> &Value {
    events
        .iter()
        .find(|e| e["kind"] == "mmap" && e["pid"] == pid && e["len"] == MARK_LEN)
        .unwrap_or_else(|| panic!("no mmap of {MARK_LEN} bytes by pid {pid} in {events:#?}"))
}

#[test]
fn stacks_name_the_callers_of_the_syscall() {
    if !require_bpf() {
        return;
    }
    let (_dir, program) = compiled("stack_chain", &["-O1", "-fno-omit-frame-pointer"]);
    let symbols = symbols(&program);
    let with = Trace::start(&["--json", "--stacks", "--comm", "stack_chain"], true);
    let without = Trace::start(&["--json", "--comm", "stack_chain"], true);
    let run = Command::new(&program).output().expect("run the fixture");
    assert!(run.status.success(), "fixture: {}", output_text(&run));
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let first = stdout.lines().next().unwrap_or_default();
    // PIE: where the functions run minus where the symbol table puts them.
    let bias = printed(first, "outer").wrapping_sub(symbols["outer"].0);
    let range = |name: &str| {
        let (start, end) = symbols[name];
        start.wrapping_add(bias)..end.wrapping_add(bias)
    };
    assert_eq!(printed(first, "main"), range("main").start, "{first}");

    let events = with.stop().events;
    let pid = events
        .iter()
        .find(|e| e["kind"] == "mmap" && e["len"] == MARK_LEN)
        .and_then(|e| e["pid"].as_u64())
        .unwrap_or_else(|| panic!("no mmap of {MARK_LEN} bytes traced: {events:#?}"))
        as u32;
    let event = marked_mmap(&events, pid);
    assert!(event["stack_id"].as_u64().is_some(), "no stack id: {event}");
    let stack: Vec<u64> = event["stack"]
        .as_array()
        .unwrap_or_else(|| panic!("no stack frames: {event}"))
        .iter()
        .map(hex)
        .collect();
    let inside = |name: &str| stack.iter().any(|ip| range(name).contains(ip));
    assert!(
        inside("outer") && inside("main"),
        "stack {stack:x?} should hold return addresses in outer {:x?} and main {:x?}",
        range("outer"),
        range("main")
    );
    // The call site is the return into the wrapper's caller.
    assert!(
        range("map_here").contains(&hex(&event["call_site"])),
        "call site {} not in map_here {:x?}",
        event["call_site"],
        range("map_here")
    );

    // Off by default: the same event, no stack.
    let plain = without.stop().events;
    let event = marked_mmap(&plain, pid);
    assert!(
        event.get("stack_id").is_none() && event.get("stack").is_none(),
        "a trace without --stacks captured one: {event}"
    );
}

#[test]
fn the_daemon_takes_the_switch_and_exports_stack_failures() {
    if !require_bpf() {
        return;
    }
    let daemon = Daemon::start_with(&["--stacks"]);
    let text = daemon.scrape();
    for reason in ["map_full", "collision", "other"] {
        let series = format!("{{reason=\"{reason}\"}}");
        assert!(
            metric(&text, "memmon_stack_capture_failures_total", &series).is_some(),
            "no memmon_stack_capture_failures_total{series} in\n{text}"
        );
    }
}
