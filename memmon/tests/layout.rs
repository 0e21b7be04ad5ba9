//! The query side of the daemon, end to end, as root: `memmon query
//! --json` agrees with /proc/PID/maps and carries recent events, a
//! missing pid is one line, `memmon ps`/`aslr`/`wx` and the raw `list`
//! request list what query shows.
//!
//! Run as root: `cargo test -p memmon --test layout`.

mod support;

use std::{fs, path::Path};

use serde_json::json;
use support::{
    QueryMe, Stopped, assert_agrees, check_ps_entry, connect, entry_for, exchange, fixture, frame,
    free_pid, hex, listing, maps_of, memmon, query_json, shared_daemon,
};

#[test]
fn query_json_agrees_with_proc_maps_and_carries_recent_events() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let QueryMe {
        run,
        ready: cp,
        program,
        dir: _dir,
    } = QueryMe::start(daemon, "query_me");

    let layout = query_json(None, daemon.socket(), run.pid, &[]);
    assert_eq!(layout["pid"], run.pid);
    assert_eq!(layout["comm"], "query_me");
    assert_eq!(layout["uid"], 0);
    assert_agrees(&layout, &maps_of(run.pid));
    // The file mapping at offset 0x1000 of the executable is there, whole.
    let file = cp.hex("file");
    let region = layout["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| hex(&r["start"]) <= file && file < hex(&r["end"]))
        .expect("a region holds the file mapping");
    assert_eq!(region["offset"], 0x1000, "{region}");
    assert_eq!(region["path"], program.to_str().unwrap(), "{region}");
    assert!(layout["events"].as_array().is_none_or(Vec::is_empty));

    let with_events = query_json(None, daemon.socket(), run.pid, &["--events", "5"]);
    assert_agrees(&with_events, &maps_of(run.pid));
    let events = with_events["events"].as_array().expect("events");
    assert!(
        (1..=5).contains(&events.len()),
        "--events 5 gave {} events: {events:?}",
        events.len()
    );
    let kinds = memmon::events::Event::KINDS;
    let mut last_ts = 0;
    for e in events {
        let line = e["line"].as_str().unwrap_or_else(|| panic!("{e}"));
        let kind = line.split_whitespace().next().unwrap_or_default();
        assert!(kinds.contains(&kind), "not a trace line: {line:?}");
        assert!(
            line.contains(" pid=") && line.contains(" comm="),
            "not a trace line: {line:?}"
        );
        let ts = e["ts_ns"].as_u64().expect("ts_ns");
        assert!(ts >= last_ts, "events out of order: {events:?}");
        last_ts = ts;
    }
    // The fixture's last memory syscall before stopping was its own.
    let last = events.last().unwrap()["line"].as_str().unwrap();
    assert!(last.contains(&format!(" pid={} ", run.pid)), "{last}");

    run.resume_and_finish();
}

#[test]
fn query_of_a_missing_pid_is_one_line_and_says_so() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let pid = free_pid();
    let err = memmon(
        None,
        daemon.socket(),
        &["query", &pid.to_string(), "--json"],
    )
    .one_line_error();
    assert!(
        err.contains("no such") && err.contains(&pid.to_string()),
        "{err}"
    );
}

#[test]
fn list_request_over_the_socket_returns_processes() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let QueryMe { run, dir: _dir, .. } = QueryMe::start(daemon, "list");
    let mut stream = connect(daemon.socket());
    let reply = exchange(
        &mut stream,
        &frame(&json!({"version": 1, "request": {"type": "list"}})),
    )
    .expect("a reply to list");
    assert_eq!(reply["version"], 1, "{reply}");
    assert_eq!(reply["ok"]["type"], "processes", "{reply}");
    let processes = reply["ok"]["processes"].as_array().expect("processes");
    let ours = entry_for(processes, run.pid).expect("the fixture is listed");
    check_ps_entry(ours, run.pid, 0, "root");
    run.resume_and_finish();
}

#[test]
fn ps_sorts_filters_and_matches_query() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let QueryMe { run, dir: _dir, .. } = QueryMe::start(daemon, "ps");
    let socket = daemon.socket();

    let all = listing(None, socket, &["ps", "--json", "--sort", "pid"]);
    let pids: Vec<u64> = all.iter().map(|p| p["pid"].as_u64().unwrap()).collect();
    assert!(pids.windows(2).all(|w| w[0] < w[1]), "not sorted: {pids:?}");
    assert!(all.len() > 3, "ps as root lists every process: {all:?}");
    let entry = entry_for(&all, run.pid).expect("the fixture is listed");
    check_ps_entry(entry, run.pid, 0, "root");
    // The same model behind both: ps agrees with query.
    let layout = query_json(None, socket, run.pid, &[]);
    assert_eq!(
        entry["vmas"].as_u64().unwrap() as usize,
        layout["regions"].as_array().unwrap().len(),
        "{entry}"
    );
    assert_eq!(entry["mapped_bytes"], layout["mapped_bytes"], "{entry}");
    assert_eq!(entry["aslr"]["status"], layout["aslr"]["status"], "{entry}");

    let by_comm = listing(None, socket, &["ps", "--json", "--comm", "query_me"]);
    assert!(entry_for(&by_comm, run.pid).is_some(), "{by_comm:?}");
    assert!(
        by_comm.iter().all(|p| p["comm"] == "query_me"),
        "{by_comm:?}"
    );

    let by_root = listing(None, socket, &["ps", "--json", "--user", "root"]);
    assert!(by_root.iter().all(|p| p["uid"] == 0), "{by_root:?}");

    let by_vmas = listing(None, socket, &["ps", "--json", "--sort", "vmas"]);
    let vmas: Vec<u64> = by_vmas
        .iter()
        .map(|p| p["vmas"].as_u64().unwrap())
        .collect();
    assert!(
        vmas.windows(2).all(|w| w[0] <= w[1]) || vmas.windows(2).all(|w| w[0] >= w[1]),
        "--sort vmas is not sorted: {vmas:?}"
    );

    let text = memmon(None, socket, &["ps", "--comm", "query_me"]);
    assert!(text.success, "{}", text.stderr);
    assert!(
        text.stdout
            .lines()
            .any(|l| l.contains(&run.pid.to_string())),
        "{}",
        text.stdout
    );
    run.resume_and_finish();
}

#[test]
fn aslr_and_wx_list_only_the_offenders() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let (_dir, program) = fixture("offenders");
    let program = program.to_str().unwrap();
    let mut clean = Stopped::spawn(Path::new(program), &[]);
    clean.checkpoint("ready");
    // setarch execs the fixture in place: the pid stays the same.
    let mut bad = Stopped::spawn(Path::new("setarch"), &["x86_64", "-R", program, "wx"]);
    bad.checkpoint("ready");
    daemon.assert_verified(clean.pid, "query_me: ready");
    daemon.assert_verified(bad.pid, "query_me wx under setarch -R: ready");
    let socket = daemon.socket();

    let aslr = listing(None, socket, &["aslr", "--json"]);
    assert!(
        aslr.iter().all(|p| p["aslr"]["status"] != "full"),
        "aslr lists a fully randomized process: {aslr:?}"
    );
    let entry = entry_for(&aslr, bad.pid).expect("setarch -R fixture in `memmon aslr`");
    assert_eq!(entry["aslr"]["status"], "off", "{entry}");
    assert!(
        !entry["aslr"]["reasons"].as_array().unwrap().is_empty(),
        "{entry}"
    );
    let randomized = fs::read_to_string("/proc/sys/kernel/randomize_va_space").unwrap();
    if randomized.trim() == "2" {
        assert!(entry_for(&aslr, clean.pid).is_none(), "{aslr:?}");
    }

    let wx = listing(None, socket, &["wx", "--json"]);
    assert!(
        wx.iter().all(|p| p["wx_count"].as_u64() > Some(0)),
        "wx lists a process without W^X findings: {wx:?}"
    );
    let entry = entry_for(&wx, bad.pid).expect("the RWX fixture in `memmon wx`");
    assert!(entry["wx_count"].as_u64() >= Some(1), "{entry}");
    assert!(entry_for(&wx, clean.pid).is_none(), "{wx:?}");

    for run in [clean, bad] {
        run.resume_and_finish();
    }
}
