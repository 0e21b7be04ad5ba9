//! The query side of the daemon, end to end: `memmon query --json` agrees
//! with /proc/PID/maps, unprivileged users see only their own processes
//! (through a `--socket-group` socket), `memmon ps`/`aslr`/`wx` and the
//! raw `list` request, a socket that survives abuse, and one-line errors.
//!
//! Run as root: `cargo test -p memmon --test query`. The unprivileged
//! tests create (and leave in place) a user and group `memmon-test`.

mod support;

use std::{
    fs,
    io::{Read as _, Write as _},
    net::Shutdown,
    os::unix::{
        fs::PermissionsExt as _,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::{Daemon, MEMMON, Stopped, TempDir, compile, maps_of, require_bpf};

// ---- running memmon -----------------------------------------------------------

/// What one `memmon` run printed.
#[derive(Debug)]
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert!(
            self.success,
            "memmon failed; stderr: {}\nstdout: {}",
            self.stderr, self.stdout
        );
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    /// Asserts a failure reported as exactly one line on stderr, with
    /// nothing on stdout; returns that line.
    fn one_line_error(&self) -> String {
        assert!(
            !self.success,
            "expected a failure, got stdout: {}",
            self.stdout
        );
        assert!(
            self.stdout.trim().is_empty(),
            "a failure printed data on stdout: {}",
            self.stdout
        );
        let err = self.stderr.trim_end();
        assert!(
            !err.is_empty() && !err.contains('\n'),
            "the error is not one line: {:?}",
            self.stderr
        );
        err.to_owned()
    }
}

/// `memmon <args> --socket <socket>`, as root or (with `user`) as that user.
fn memmon(user: Option<&TestUser>, socket: &Path, args: &[&str]) -> Run {
    let mut cmd = match user {
        None => Command::new(MEMMON),
        Some(user) => {
            let mut cmd = user.command();
            cmd.arg(&user.memmon);
            cmd
        }
    };
    let output = cmd
        .args(args)
        .arg("--socket")
        .arg(socket)
        .env_remove("MEMMON_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("run memmon");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn query_json(user: Option<&TestUser>, socket: &Path, pid: u32, extra: &[&str]) -> Value {
    let mut args = vec!["query".to_owned(), pid.to_string(), "--json".to_owned()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    memmon(user, socket, &args).json()
}

/// `memmon ps|aslr|wx --json ...` as an array.
fn listing(user: Option<&TestUser>, socket: &Path, args: &[&str]) -> Vec<Value> {
    let value = memmon(user, socket, args).json();
    value
        .as_array()
        .unwrap_or_else(|| panic!("`memmon {}` is not an array: {value}", args.join(" ")))
        .clone()
}

fn entry_for(list: &[Value], pid: u32) -> Option<&Value> {
    list.iter()
        .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
}

fn hex(v: &Value) -> u64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a hex string: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("bad hex {s}"))
}

/// A pid no process has.
fn free_pid() -> u32 {
    (999_999..)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap()
}

/// A fixture binary in a directory every user can traverse.
fn fixture(tag: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(tag);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let program = compile(&dir, "query_me", &[]);
    (dir, program)
}

// ---- the fidelity rule ------------------------------------------------------------

/// One mapping as the fidelity rule sees it: the offset only counts for
/// file mappings.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
    perms: String,
    offset: Option<u64>,
    path: String,
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}-{:x} {}", self.start, self.end, self.perms)?;
        if let Some(off) = self.offset {
            write!(f, " off={off:#x}")?;
        }
        write!(f, " {:?}", self.path)
    }
}

/// File-backed: /proc prints an absolute path (memfd, SysV shm and
/// deleted files included); `[heap]`, `[anon:x]` and "" are not files.
fn is_file_path(path: &str) -> bool {
    path.starts_with('/')
}

fn span(start: u64, end: u64, perms: &str, offset: u64, path: &str) -> Span {
    Span {
        start,
        end,
        perms: perms.to_owned(),
        offset: is_file_path(path).then_some(offset),
        path: path.to_owned(),
    }
}

/// Parses /proc/PID/maps; the path is everything after the inode and its
/// padding, exactly as printed.
fn proc_spans(maps: &str) -> Vec<Span> {
    maps.lines()
        .map(|line| {
            let mut rest = line;
            let mut fields = Vec::new();
            for _ in 0..5 {
                rest = rest.trim_start_matches(' ');
                let end = rest.find(' ').unwrap_or(rest.len());
                fields.push(&rest[..end]);
                rest = &rest[end..];
            }
            let (lo, hi) = fields[0].split_once('-').expect("start-end");
            span(
                u64::from_str_radix(lo, 16).unwrap(),
                u64::from_str_radix(hi, 16).unwrap(),
                fields[1],
                u64::from_str_radix(fields[2], 16).unwrap(),
                rest.trim_start_matches(' '),
            )
        })
        .collect()
}

fn layout_spans(layout: &Value) -> Vec<Span> {
    layout["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .map(|r| {
            span(
                hex(&r["start"]),
                hex(&r["end"]),
                r["perms"].as_str().expect("perms"),
                r["offset"].as_u64().expect("offset"),
                r["path"].as_str().expect("path"),
            )
        })
        .collect()
}

/// Merges adjacent spans that differ only in where one was split.
fn merged(spans: Vec<Span>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for s in spans {
        if let Some(last) = out.last_mut() {
            let continues = last.end == s.start
                && last.perms == s.perms
                && last.path == s.path
                && match (last.offset, s.offset) {
                    (Some(a), Some(b)) => a + (last.end - last.start) == b,
                    (None, None) => true,
                    _ => false,
                };
            if continues {
                last.end = s.end;
                continue;
            }
        }
        out.push(s);
    }
    out
}

/// Asserts the layout agrees with /proc under the README's rule.
fn assert_agrees(layout: &Value, maps: &str) {
    let mut ours = merged(layout_spans(layout));
    let mut kernel = merged(proc_spans(maps));
    // The lower end of [stack] grows on faults, with no syscall to see.
    let floor = ours
        .iter()
        .chain(&kernel)
        .filter(|s| s.path == "[stack]")
        .map(|s| s.start)
        .max();
    for s in ours.iter_mut().chain(kernel.iter_mut()) {
        if s.path == "[stack]" {
            s.start = floor.unwrap();
        }
    }
    if ours != kernel {
        let show = |v: &[Span]| v.iter().map(|s| format!("  {s}\n")).collect::<String>();
        let first = ours
            .iter()
            .zip(&kernel)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(kernel.len()));
        panic!(
            "the layout disagrees with /proc at entry {first}:\n--- query ---\n{}--- /proc ---\n{}",
            show(&ours),
            show(&kernel)
        );
    }
}

// ---- as root ---------------------------------------------------------------------

#[test]
fn query_json_agrees_with_proc_maps_and_carries_recent_events() {
    if !require_bpf() {
        return;
    }
    let daemon = Daemon::shared();
    let (_dir, program) = fixture("query_me");
    let mut run = Stopped::spawn(&program, &[]);
    let cp = run.checkpoint("ready");
    daemon.assert_verified(run.pid, "query_me: ready");

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
    const KINDS: [&str; 12] = [
        "mmap",
        "munmap",
        "brk",
        "mprotect",
        "pkey_mprotect",
        "mremap",
        "shmat",
        "shmdt",
        "vma_name",
        "exec",
        "fork",
        "exit",
    ];
    let mut last_ts = 0;
    for e in events {
        let line = e["line"].as_str().unwrap_or_else(|| panic!("{e}"));
        let kind = line.split_whitespace().next().unwrap_or_default();
        assert!(KINDS.contains(&kind), "not a trace line: {line:?}");
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

    run.resume();
    run.finish();
}

#[test]
fn query_of_a_missing_pid_is_one_line_and_says_so() {
    if !require_bpf() {
        return;
    }
    let daemon = Daemon::shared();
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
    if !require_bpf() {
        return;
    }
    let daemon = Daemon::shared();
    let (_dir, program) = fixture("list");
    let mut run = Stopped::spawn(&program, &[]);
    run.checkpoint("ready");
    daemon.assert_verified(run.pid, "query_me: ready");
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
    run.resume();
    run.finish();
}

/// The fields of one `ps --json` entry, and that they add up.
fn check_ps_entry(entry: &Value, pid: u32, uid: u32, user: &str) {
    assert_eq!(entry["pid"], pid, "{entry}");
    assert_eq!(entry["comm"], "query_me", "{entry}");
    assert_eq!(entry["uid"], uid, "{entry}");
    assert_eq!(entry["user"], user, "{entry}");
    assert!(entry["vmas"].as_u64().unwrap_or(0) > 10, "{entry}");
    let mapped = entry["mapped_bytes"].as_u64().expect("mapped_bytes");
    let by_kind = entry["by_kind"].as_object().expect("by_kind");
    let sum: u64 = by_kind.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(sum, mapped, "by_kind does not add up: {entry}");
    for kind in ["text", "heap", "stack"] {
        assert!(by_kind.contains_key(kind), "no {kind} in {entry}");
    }
    assert!(
        ["full", "partial", "off"].contains(&entry["aslr"]["status"].as_str().unwrap_or("")),
        "{entry}"
    );
    assert!(entry["aslr"]["reasons"].is_array(), "{entry}");
    assert!(entry["wx_count"].is_u64(), "{entry}");
}

#[test]
fn ps_sorts_filters_and_matches_query() {
    if !require_bpf() {
        return;
    }
    let daemon = Daemon::shared();
    let (_dir, program) = fixture("ps");
    let mut run = Stopped::spawn(&program, &[]);
    run.checkpoint("ready");
    daemon.assert_verified(run.pid, "query_me: ready");
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
    run.resume();
    run.finish();
}

#[test]
fn aslr_and_wx_list_only_the_offenders() {
    if !require_bpf() {
        return;
    }
    let daemon = Daemon::shared();
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
        run.resume();
        run.finish();
    }
}

// ---- unprivileged users ---------------------------------------------------------

const TEST_USER: &str = "memmon-test";

struct TestUser {
    uid: u32,
    /// A memmon binary this user may execute.
    memmon: PathBuf,
    _dir: Option<TempDir>,
}

impl TestUser {
    /// A command that runs as the user, with its groups.
    fn command(&self) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid",
            TEST_USER,
            "--regid",
            TEST_USER,
            "--init-groups",
            "--",
        ]);
        cmd
    }
}

fn sh(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The user and group `memmon-test`, created when missing (and left in place).
fn test_user() -> &'static TestUser {
    static USER: OnceLock<TestUser> = OnceLock::new();
    USER.get_or_init(|| {
        if !sh("getent", &["group", TEST_USER]).0 {
            let (ok, out) = sh("groupadd", &[TEST_USER]);
            assert!(
                ok || sh("getent", &["group", TEST_USER]).0,
                "groupadd: {out}"
            );
        }
        if !sh("getent", &["passwd", TEST_USER]).0 {
            let (ok, out) = sh(
                "useradd",
                &[
                    "-M",
                    "-N",
                    "-g",
                    TEST_USER,
                    "-s",
                    "/usr/sbin/nologin",
                    TEST_USER,
                ],
            );
            assert!(
                ok || sh("getent", &["passwd", TEST_USER]).0,
                "useradd: {out}"
            );
        }
        let (ok, uid) = sh("id", &["-u", TEST_USER]);
        assert!(ok, "id -u: {uid}");
        let uid = uid.trim().parse().expect("numeric uid");
        let mut user = TestUser {
            uid,
            memmon: PathBuf::from(MEMMON),
            _dir: None,
        };
        // The build tree may not be open to other users: copy the binary.
        let mut probe = user.command();
        let reachable = probe
            .args(["test", "-x", MEMMON])
            .status()
            .is_ok_and(|s| s.success());
        if !reachable {
            let dir = TempDir::new("memmon-bin");
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
            let copy = dir.path().join("memmon");
            fs::copy(MEMMON, &copy).expect("copy memmon");
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
            user.memmon = copy;
            user._dir = Some(dir);
        }
        user
    })
}

/// A daemon whose socket the test group may use.
fn group_daemon() -> Daemon {
    let daemon = Daemon::start_with(&["--socket-group", TEST_USER]);
    let dir = daemon.socket().parent().unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    daemon
}

/// `program args` as the test user; setpriv execs it in place.
fn spawn_as_user(program: &Path, args: &[&str]) -> Stopped {
    let mut all = vec![
        "--reuid",
        TEST_USER,
        "--regid",
        TEST_USER,
        "--init-groups",
        "--",
        program.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    Stopped::spawn(Path::new("setpriv"), &all)
}

#[test]
fn an_unprivileged_user_sees_only_their_own_processes() {
    if !require_bpf() {
        return;
    }
    let user = test_user();
    let daemon = group_daemon();
    let socket = daemon.socket();
    let meta = fs::metadata(socket).expect("socket");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "socket mode");
    let (ok, gid) = sh("getent", &["group", TEST_USER]);
    assert!(ok);
    let gid: u32 = gid.split(':').nth(2).unwrap().trim().parse().unwrap();
    {
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(meta.gid(), gid, "the socket belongs to group {TEST_USER}");
    }

    let (_dir, program) = fixture("unpriv");
    let mut mine = spawn_as_user(&program, &[]);
    let cp = mine.checkpoint("ready");
    assert_eq!(
        cp.num("uid"),
        u64::from(user.uid),
        "the fixture runs as the user"
    );
    let mut roots = Stopped::spawn(&program, &[]);
    roots.checkpoint("ready");
    daemon.assert_verified(mine.pid, "user's query_me: ready");
    daemon.assert_verified(roots.pid, "root's query_me: ready");

    // Their own process: the whole layout, the same one root gets.
    let layout = query_json(Some(user), socket, mine.pid, &[]);
    assert_eq!(layout["pid"], mine.pid);
    assert_eq!(layout["uid"], user.uid);
    assert_agrees(&layout, &maps_of(mine.pid));

    // Root's process: refused, in one line, with nothing on stdout.
    let err = memmon(
        Some(user),
        socket,
        &["query", &roots.pid.to_string(), "--json"],
    )
    .one_line_error();
    assert!(
        err.contains("permission") || err.contains("another user"),
        "{err}"
    );
    let err = memmon(Some(user), socket, &["query", &roots.pid.to_string()]).one_line_error();
    assert!(
        err.contains("permission") || err.contains("another user"),
        "{err}"
    );
    // Nor may they verify it.
    let verify = memmon(Some(user), socket, &["verify", &roots.pid.to_string()]);
    assert!(!verify.success, "{verify:?}");
    assert!(!verify.stdout.contains("[stack]"), "{verify:?}");

    // ps: only their own, theirs included; root sees both.
    let theirs = listing(Some(user), socket, &["ps", "--json"]);
    assert!(
        theirs.iter().all(|p| p["uid"] == user.uid),
        "ps as {TEST_USER} lists other users' processes: {theirs:?}"
    );
    let entry = entry_for(&theirs, mine.pid).expect("ps as the user lists its fixture");
    check_ps_entry(entry, mine.pid, user.uid, TEST_USER);
    let all = listing(None, socket, &["ps", "--json"]);
    assert!(entry_for(&all, mine.pid).is_some(), "root's ps: {all:?}");
    assert!(entry_for(&all, roots.pid).is_some(), "root's ps: {all:?}");
    for cmd in ["aslr", "wx"] {
        let listed = listing(Some(user), socket, &[cmd, "--json"]);
        assert!(
            listed.iter().all(|p| p["uid"] == user.uid),
            "{cmd} as {TEST_USER} lists other users' processes: {listed:?}"
        );
    }

    for run in [mine, roots] {
        run.resume();
        run.finish();
    }
    assert!(daemon.alive(), "{:?}", daemon.stderr());
}

/// A setuid-root program run by the user keeps the user's real uid, but
/// the kernel hides its maps from that user (they are not the same
/// credentials, and it is not dumpable): the daemon must not leak its
/// layout (and with it, its ASLR offsets) either.
#[test]
fn a_setuid_root_process_started_by_the_user_stays_hidden_from_them() {
    if !require_bpf() {
        return;
    }
    let user = test_user();
    let daemon = group_daemon();
    let socket = daemon.socket();
    let (_dir, program) = fixture("setuid");
    fs::set_permissions(&program, fs::Permissions::from_mode(0o4755)).unwrap();
    let mut run = spawn_as_user(&program, &[]);
    let cp = run.checkpoint("ready");
    assert_eq!(cp.num("uid"), u64::from(user.uid));
    assert_eq!(cp.num("euid"), 0, "the fixture did not run setuid root");
    daemon.assert_verified(run.pid, "setuid query_me: ready");
    // The kernel's own answer, as the user.
    let mut cat = user.command();
    let kernel = cat
        .args(["cat", &format!("/proc/{}/maps", run.pid)])
        .output()
        .unwrap();
    assert!(
        !kernel.status.success() || kernel.stdout.is_empty(),
        "the kernel showed the maps of a setuid process to its invoker"
    );
    let err = memmon(
        Some(user),
        socket,
        &["query", &run.pid.to_string(), "--json"],
    )
    .one_line_error();
    assert!(
        err.contains("permission") || err.contains("another user"),
        "{err}"
    );
    run.resume();
    run.finish();
}

// ---- socket abuse -------------------------------------------------------------------

fn frame(value: &Value) -> Vec<u8> {
    raw_frame(&serde_json::to_vec(value).unwrap())
}

fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn connect(socket: &Path) -> UnixStream {
    let stream = UnixStream::connect(socket).expect("connect to the daemon");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// The next reply frame; None when the daemon closed the connection.
fn read_reply(stream: &mut UnixStream) -> Option<Value> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("reading a reply: {e}"),
    }
    let len = u32::from_be_bytes(len);
    assert!(len < 1 << 20, "an error reply of {len} bytes");
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).expect("the reply's body");
    Some(serde_json::from_slice(&body).expect("the reply is JSON"))
}

fn exchange(stream: &mut UnixStream, bytes: &[u8]) -> Option<Value> {
    stream.write_all(bytes).expect("send");
    read_reply(stream)
}

fn error_kind(reply: &Value) -> &str {
    assert_eq!(reply["version"], 1, "{reply}");
    assert!(
        reply["error"]["message"].is_string(),
        "no error message: {reply}"
    );
    reply["error"]["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error reply: {reply}"))
}

#[test]
fn the_socket_survives_abuse_and_keeps_serving_others() {
    if !require_bpf() {
        return;
    }
    let daemon = Daemon::start();
    let socket = daemon.socket().to_owned();
    let (_dir, program) = fixture("abuse");
    let mut run = Stopped::spawn(&program, &[]);
    run.checkpoint("ready");
    daemon.assert_verified(run.pid, "query_me: ready");
    let pid = run.pid;
    let query_works = |when: &str| {
        let layout = query_json(None, &socket, pid, &[]);
        assert_eq!(layout["pid"], pid, "query {when}");
    };

    // A client that sends half a frame and then nothing: it must not hold
    // up anyone else, and gets its error once the daemon gives up on it.
    let mut stalled = connect(&socket);
    stalled.write_all(&100u32.to_be_bytes()).unwrap();
    stalled.write_all(b"{\"version\"").unwrap();
    let stalled_since = Instant::now();
    // Idle connections that never send a byte.
    let idle: Vec<UnixStream> = (0..64).map(|_| connect(&socket)).collect();
    query_works("with a stalled client and 64 idle ones");

    // (a) garbage with a valid length prefix; the connection stays usable.
    let mut s = connect(&socket);
    let reply = exchange(&mut s, &raw_frame(b"\xff\x00\x13garbage\x00")).expect("a reply");
    assert_eq!(error_kind(&reply), "bad_request", "{reply}");
    let reply = exchange(
        &mut s,
        &frame(&json!({"version": 1, "request": {"type": "ping"}})),
    )
    .expect("a reply to ping after garbage");
    assert_eq!(reply["ok"]["type"], "pong", "{reply}");
    // Valid JSON, but not a request.
    let reply = exchange(&mut s, &raw_frame(b"[1,2,3]")).expect("a reply");
    assert_eq!(error_kind(&reply), "bad_request", "{reply}");
    let reply = exchange(&mut s, &raw_frame(b"")).expect("a reply to an empty frame");
    assert_eq!(error_kind(&reply), "bad_request", "{reply}");

    // (b) a header claiming 4 GiB: refused before any allocation, then closed.
    let mut s = connect(&socket);
    let reply = exchange(&mut s, &u32::MAX.to_be_bytes()).expect("a reply");
    assert_eq!(error_kind(&reply), "too_large", "{reply}");
    let mut s = connect(&socket);
    let reply = exchange(&mut s, &(64 * 1024 + 1u32).to_be_bytes()).expect("a reply");
    assert_eq!(error_kind(&reply), "too_large", "{reply}");

    // (c) a truncated frame, then the writer closes: an error reply or a
    // plain close are both fine; a crash is not.
    let mut s = connect(&socket);
    s.write_all(&50u32.to_be_bytes()).unwrap();
    s.write_all(b"{\"version\":1,").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    if let Some(reply) = read_reply(&mut s) {
        assert_eq!(error_kind(&reply), "bad_request", "{reply}");
    }
    // And one that closes mid-header.
    let mut s = connect(&socket);
    s.write_all(&[0, 0]).unwrap();
    drop(s);

    // (d) a wrong version.
    let mut s = connect(&socket);
    let reply = exchange(
        &mut s,
        &frame(&json!({"version": 2, "request": {"type": "query", "pid": pid}})),
    )
    .expect("a reply");
    assert_eq!(error_kind(&reply), "version_mismatch", "{reply}");
    let reply = exchange(
        &mut s,
        &frame(&json!({"version": 0, "request": {"type": "ping"}})),
    )
    .expect("a reply");
    assert_eq!(error_kind(&reply), "version_mismatch", "{reply}");

    // (e) an unknown request type, and a known one with bad fields.
    let reply = exchange(
        &mut s,
        &frame(&json!({"version": 1, "request": {"type": "launch_missiles"}})),
    )
    .expect("a reply");
    assert_eq!(error_kind(&reply), "bad_request", "{reply}");
    let reply = exchange(
        &mut s,
        &frame(&json!({"version": 1, "request": {"type": "query", "pid": -1}})),
    )
    .expect("a reply");
    assert_eq!(error_kind(&reply), "bad_request", "{reply}");
    let reply = exchange(
        &mut s,
        &frame(&json!({"version": 1, "request": {"type": "query", "pid": free_pid()}})),
    )
    .expect("a reply");
    assert_eq!(error_kind(&reply), "no_such_pid", "{reply}");

    query_works("after the abuse");

    // The stalled client gets its answer once the daemon gives up on it.
    let reply = read_reply(&mut stalled);
    if let Some(reply) = reply {
        assert_eq!(error_kind(&reply), "bad_request", "{reply}");
    }
    assert!(
        stalled_since.elapsed() < Duration::from_secs(30),
        "the stalled client was held for {:?}",
        stalled_since.elapsed()
    );
    drop(idle);

    thread::sleep(Duration::from_millis(200));
    assert!(daemon.alive(), "the daemon died: {:?}", daemon.stderr());
    query_works("at the end");
    run.resume();
    run.finish();
}

// ---- errors without a daemon ------------------------------------------------------

#[test]
fn without_a_daemon_every_client_says_how_to_start_it() {
    let dir = TempDir::new("nodaemon");
    let socket = dir.path().join("no-such.sock");
    for args in [
        &["query", "1"][..],
        &["query", "1", "--json"],
        &["verify", "1"],
        &["ps"],
        &["ps", "--json"],
        &["aslr"],
        &["wx"],
    ] {
        let err = memmon(None, &socket, args).one_line_error();
        assert!(
            err.contains("not running") && err.contains("memmon daemon"),
            "`memmon {}`: {err}",
            args.join(" ")
        );
    }
}

/// A fake daemon on `socket` that answers one request with `reply`.
fn fake_daemon(socket: &Path, reply: Vec<u8>) -> thread::JoinHandle<()> {
    let listener = UnixListener::bind(socket).expect("bind a fake daemon");
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut body).unwrap();
        let _ = stream.write_all(&reply);
    })
}

#[test]
fn a_daemon_of_another_protocol_version_is_one_clear_line() {
    let dir = TempDir::new("v2");
    // A future daemon's replies: a typed error, and a reply this client
    // cannot parse. Either way the client must say "version", not
    // "malformed message".
    for reply in [
        json!({"version": 2, "error": {"kind": "version_mismatch", "message": "client speaks 1, daemon 2"}}),
        json!({"version": 2, "ok": {"type": "layout_v2", "regions": []}}),
    ] {
        let socket = dir.path().join("fake.sock");
        let _ = fs::remove_file(&socket);
        let server = fake_daemon(&socket, frame(&reply));
        let err = memmon(None, &socket, &["query", "1", "--json"]).one_line_error();
        server.join().unwrap();
        assert!(err.contains("version"), "reply {reply}: {err}");
    }
}

#[test]
fn an_oversized_or_garbled_reply_is_one_line() {
    let dir = TempDir::new("garbled");
    for reply in [u32::MAX.to_be_bytes().to_vec(), raw_frame(b"\x00not json")] {
        let socket = dir.path().join("fake.sock");
        let _ = fs::remove_file(&socket);
        let server = fake_daemon(&socket, reply);
        memmon(None, &socket, &["query", "1", "--json"]).one_line_error();
        server.join().unwrap();
    }
}
