//! Acceptance of the foundation: the real eBPF programs see every memory
//! syscall with its exact arguments and result, lose nothing at a million
//! pairs per run with the default ring buffer, report losses when the
//! buffer is too small, and refuse clearly without privileges.
//!
//! Run as root: `cargo test -p memmon --test foundation -- --test-threads=1`.

mod support;

use std::{
    collections::HashMap,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{MEMMON, Summary, Trace, brief, compiled, is_root, require_bpf, run_to_end};

/// One `event KIND key=value...` line printed by the sequence fixture.
#[derive(Debug)]
struct Expected {
    kind: String,
    pid: u64,
    fields: Vec<(String, String)>,
    line: String,
}

fn parse_expected(lines: &[String]) -> Vec<Expected> {
    lines
        .iter()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next() != Some("event") {
                return None;
            }
            let kind = words.next().expect("event kind").to_owned();
            let fields: Vec<(String, String)> = words
                .map(|w| {
                    let (k, v) = w
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad fixture line {line:?}"));
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            let pid = fields
                .iter()
                .find(|(k, _)| k == "pid")
                .expect("pid field")
                .1
                .parse()
                .expect("pid");
            Some(Expected {
                kind,
                pid,
                fields,
                line: line.clone(),
            })
        })
        .collect()
}

/// A JSON value as the fixture prints it: strings bare, numbers and
/// booleans in their JSON text.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn matches(expected: &Expected, event: &Value) -> bool {
    event["kind"] == expected.kind.as_str()
        && expected
            .fields
            .iter()
            .all(|(k, v)| event.get(k).map(text).as_deref() == Some(v.as_str()))
}

#[test]
fn every_event_carries_the_exact_arguments_and_results() {
    if !require_bpf() {
        return;
    }
    let (dir, fixture) = compiled("sequence", &[]);
    let trace = Trace::start(&["--json", "--comm", "sequence"], true);
    let data_dir = dir.path().to_str().expect("utf-8 temp path");
    let (status, lines, pid) = run_to_end(&fixture, &[data_dir], Duration::from_secs(30));
    assert!(
        status.success(),
        "sequence fixture failed: {status}; output: {lines:?}"
    );
    // The last event is the fixture's own exit: wait for it before Ctrl-C.
    let exited = |e: &Value| e["kind"] == "exit" && e["pid"] == pid && e["group_dead"] == true;
    let seen_exit = trace.wait_for_event(exited, Duration::from_secs(10));
    let out = trace.stop();
    assert!(
        seen_exit,
        "no exit event for pid {pid}; events: {:#?}",
        out.events
    );
    assert!(
        out.status.success(),
        "memmon trace exited with {}: {:?}",
        out.status,
        out.stderr
    );
    assert_eq!(
        (out.summary.lost, out.summary.undecodable),
        (0, 0),
        "{:?}",
        out.stderr
    );

    let expected = parse_expected(&lines);
    let kinds: Vec<&str> = expected.iter().map(|e| e.kind.as_str()).collect();
    for kind in [
        "mmap", "mprotect", "mremap", "munmap", "brk", "fork", "exec", "exit",
    ] {
        assert!(
            kinds.contains(&kind),
            "the fixture printed no {kind} event: {lines:?}"
        );
    }
    assert!(
        expected.len() >= 18,
        "the fixture printed only {} events: {lines:?}",
        expected.len()
    );

    // Each expected event must appear, in the fixture's order for its
    // process, with every printed field exactly equal.
    let mut cursor: HashMap<u64, usize> = HashMap::new();
    for exp in &expected {
        let from = cursor.get(&exp.pid).copied().unwrap_or(0);
        let found = out
            .events
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, e)| e["pid"] == exp.pid && matches(exp, e));
        match found {
            Some((index, _)) => {
                cursor.insert(exp.pid, index + 1);
            }
            None => {
                let same_kind: Vec<&Value> = out
                    .events
                    .iter()
                    .filter(|e| e["pid"] == exp.pid && e["kind"] == exp.kind.as_str())
                    .collect();
                panic!(
                    "no traced event matches the fixture's\n  {}\n(after event #{from} of pid {}); \
                     the {} events of that pid:\n{:#?}",
                    exp.line, exp.pid, exp.kind, same_kind
                );
            }
        }
    }
    // The exec'd child kept the fixture's comm and is the fork's child.
    let child = expected
        .iter()
        .find(|e| e.kind == "fork")
        .expect("fork")
        .fields
        .iter()
        .find(|(k, _)| k == "child_pid");
    let child: u64 = child.expect("child_pid").1.parse().expect("child pid");
    assert!(
        out.events
            .iter()
            .any(|e| e["kind"] == "exec" && e["pid"] == child && e["comm"] == "sequence")
    );
    eprintln!(
        "sequence: {} expected events matched among {} traced ({} seen in all)",
        expected.len(),
        out.events.len(),
        out.summary.events
    );
}

/// Storms run one at a time: `trace` is system-wide, so a concurrent
/// storm would be traced too and measure the two tests together.
static STORM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `churn <pairs>` under `memmon trace --json [extra]` with stdout
/// to /dev/null; returns the summary, trace's stderr and the churn time.
fn churn_under_trace(
    memmon: &Path,
    pairs: u64,
    extra: &[&str],
) -> (Summary, Vec<String>, Duration) {
    let _one_at_a_time = STORM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (_dir, fixture) = compiled("churn", &[]);
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let trace = Trace::start_with(memmon, &args, false);
    let started = Instant::now();
    let (status, lines, _) = run_to_end(&fixture, &[&pairs.to_string()], Duration::from_secs(300));
    let took = started.elapsed();
    assert!(status.success(), "churn failed: {status}");
    assert_eq!(lines, [format!("pairs={pairs}")]);
    // The reader polls every 20 ms: give it time to drain before Ctrl-C.
    thread::sleep(Duration::from_millis(1500));
    let out = trace.stop();
    assert!(
        out.status.success(),
        "memmon trace exited with {}: {:?}",
        out.status,
        out.stderr
    );
    (out.summary, out.stderr, took)
}

#[test]
fn a_million_pairs_lose_nothing_with_the_default_ring_buffer() {
    if !require_bpf() {
        return;
    }
    // The dev profile is optimised (workspace Cargo.toml) so that this
    // binary keeps up; a fully unoptimised one loses about half.
    let memmon = std::path::PathBuf::from(MEMMON);
    let (summary, stderr, took) = churn_under_trace(&memmon, 1_000_000, &[]);
    eprintln!("1,000,000 pairs in {took:?}: {summary:?}");
    let stderr = brief(&stderr);
    assert_eq!(
        summary.lost, 0,
        "events were lost with the default ring buffer:\n{stderr}"
    );
    assert_eq!(summary.undecodable, 0, "{stderr}");
    assert!(
        summary.events >= 2_000_000,
        "only {} events for 1,000,000 mmap+munmap pairs:\n{stderr}",
        summary.events
    );
    assert!(!stderr.contains("lost so far"), "{stderr}");
}

#[test]
fn a_tiny_ring_buffer_loses_events_and_says_so() {
    if !require_bpf() {
        return;
    }
    let (summary, stderr, took) =
        churn_under_trace(Path::new(MEMMON), 200_000, &["--ringbuf-size", "4096"]);
    eprintln!("200,000 pairs with a 4 KiB ring buffer in {took:?}: {summary:?}");
    let reported = stderr.iter().any(|l| l.contains("events lost so far"));
    let stderr = brief(&stderr);
    assert!(
        summary.lost > 0,
        "a 4 KiB ring buffer lost nothing under 400,000 events:\n{stderr}"
    );
    assert!(
        reported,
        "losses were never reported while tracing:\n{stderr}"
    );
    assert_eq!(summary.undecodable, 0, "{stderr}");
}

#[test]
fn without_privileges_trace_fails_with_one_clear_line() {
    // As root, drop to nobody; as anyone else, we are unprivileged already.
    let mut cmd = if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", MEMMON]);
        cmd
    } else {
        Command::new(MEMMON)
    };
    cmd.arg("trace").stdin(Stdio::null());
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn memmon trace");
    let status = support::wait_timeout(&mut child, Duration::from_secs(30)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("unprivileged memmon trace did not exit within 30 s");
    });
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !status.success(),
        "unprivileged memmon trace succeeded; stderr: {stderr:?}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one stderr line, got: {stderr:?}"
    );
    assert!(
        lines[0].contains("CAP_BPF") || lines[0].contains("root"),
        "the error does not name the missing privilege: {:?}",
        lines[0]
    );
    assert!(
        output.stdout.is_empty(),
        "stdout: {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
}
