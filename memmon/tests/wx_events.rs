//! W^X transitions as events (issue 11): a C fixture in the JIT pattern,
//! then real runtimes (node, java), through `memmon wx --events --json`
//! and a real /metrics scrape.

mod support;

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::*;

/// A daemon grouping metrics by comm (so a fixture's counts are its own),
/// whose socket the test user may use.
fn daemon() -> Daemon {
    let daemon = Daemon::start_with(&["--grouping", "comm", "--socket-group", TEST_USER]);
    let dir = daemon.socket().parent().unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    daemon
}

/// `memmon wx --events --json [PID]` as root or `user`.
fn wx_events(daemon: &Daemon, user: Option<&TestUser>, pid: Option<u32>) -> Vec<Value> {
    let pid = pid.map(|p| p.to_string());
    let mut args = vec!["wx", "--events", "--json"];
    args.extend(pid.as_deref());
    listing(user, daemon.socket(), &args)
}

/// Polls `pid`'s events until `done` holds (events reach the daemon
/// through a ring buffer: they may trail the process a little).
fn events_until(
    daemon: &Daemon,
    pid: u32,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let events = wx_events(daemon, None, Some(pid));
        if done(&events) {
            return events;
        }
        if Instant::now() > deadline {
            panic!("pid {pid}: no {what} within 15 s; events: {events:#?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The file offsets `[start, end)` of function `name` in `binary`, from
/// `nm` (its address and size) and the LOAD segment holding it.
fn function_file_range(binary: &Path, name: &str) -> (u64, u64) {
    let (ok, nm) = sh("nm", &["-S", "--defined-only", binary.to_str().unwrap()]);
    assert!(ok, "nm: {nm}");
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let (addr, size) = nm
        .lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 4 && w[3] == name).then(|| (hex(w[0]), hex(w[1])))
        })
        .unwrap_or_else(|| panic!("{name} not in nm of {}:\n{nm}", binary.display()));
    let (ok, segments) = sh("readelf", &["-lW", binary.to_str().unwrap()]);
    assert!(ok, "readelf: {segments}");
    // LOAD Offset VirtAddr PhysAddr FileSiz MemSiz Flg Align
    let shift = segments
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.first() == Some(&"LOAD"))
        .find_map(|w| {
            let (offset, vaddr, filesz) = (hex(w[1]), hex(w[2]), hex(w[4]));
            (vaddr <= addr && addr < vaddr + filesz).then(|| vaddr - offset)
        })
        .unwrap_or_else(|| panic!("no LOAD segment holds {name}:\n{segments}"));
    (addr - shift, addr - shift + size)
}

fn call_site(event: &Value) -> (Option<&str>, u64) {
    let site = &event["call_site"];
    (site["object"].as_str(), hex(&site["offset"]))
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["kind"].as_str().unwrap()).collect()
}

fn wx_total(scrape: &str, group: &str, transition: &str) -> f64 {
    let labels = format!("{{group=\"{group}\",transition=\"{transition}\"}}");
    metric(scrape, "memmon_wx_transitions_total", &labels).unwrap_or(0.0)
}

#[test]
fn the_jit_pattern_shows_each_flip_with_its_call_site_and_counts() {
    if !require_bpf() {
        return;
    }
    let daemon = daemon();
    let (dir, program) = compiled("jit_wx", &[]);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let mut run = Stopped::spawn(&program, &[]);
    let done = run.checkpoint("done");
    assert_eq!(done.num("ret"), 42, "the JIT'd code ran");
    let rounds = done.num("rounds") as usize;
    let pid = run.pid;
    let events = events_until(&daemon, pid, "3 transitions per round", |e| {
        e.len() >= 3 * rounds
    });
    let round = ["w_to_x", "anon_exec", "x_to_w"];
    assert_eq!(kinds(&events), round.repeat(rounds), "{events:#?}");
    let object = fs::canonicalize(&program).unwrap();
    let (start, end) = function_file_range(&program, "jit_emit");
    for e in &events {
        assert_eq!(e["pid"], pid);
        assert_eq!(e["comm"], "jit_wx");
        assert_eq!(e["syscall"], "mprotect");
        assert_eq!(e["tid"], pid, "single-threaded");
        assert_eq!(hex(&e["end"]) - hex(&e["start"]), 4096);
        let (site_object, offset) = call_site(e);
        assert_eq!(site_object, object.to_str(), "{e}");
        assert!(
            (start..end).contains(&offset),
            "call site {offset:#x} outside jit_emit [{start:#x}, {end:#x}): {e}"
        );
        // Named from the fixture's symbol table, independently of nm.
        assert_eq!(e["call_site"]["symbol"], "jit_emit", "{e}");
        assert!(e["age_ns"].as_u64().is_some(), "{e}");
    }
    let perms: Vec<(&str, &str)> = events[..3]
        .iter()
        .map(|e| (e["old"].as_str().unwrap(), e["new"].as_str().unwrap()))
        .collect();
    assert_eq!(
        perms,
        [("rw-p", "r-xp"), ("rw-p", "r-xp"), ("r-xp", "rw-p")]
    );
    // The table names the call site as `symbol (object+0xoffset)`.
    let text = memmon(None, daemon.socket(), &["wx", "--events", &pid.to_string()]);
    let line = format!("jit_emit (jit_wx+{:#x})", call_site(&events[0]).1);
    assert!(text.ok().contains(&line), "{line} not in:\n{}", text.ok());

    // Counted per group (comm here) in a real scrape, and kept after exit.
    let n = rounds as f64;
    let counts = |scrape: &str| {
        ["w_to_x", "x_to_w", "anon_exec", "created_wx"].map(|t| wx_total(scrape, "jit_wx", t))
    };
    assert_eq!(counts(&daemon.scrape()), [n, n, n, 0.0]);

    // A user who may not read the fixture's maps sees none of it.
    let user = test_user();
    let theirs = wx_events(&daemon, Some(user), None);
    assert!(theirs.iter().all(|e| e["pid"] != pid), "{theirs:#?}");
    let refused = memmon(
        Some(user),
        daemon.socket(),
        &["wx", "--events", &pid.to_string()],
    );
    assert!(!refused.success, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("no such process"),
        "{}",
        refused.stderr
    );

    // Once the daemon has dropped the process, its counts stay, in the
    // group of exited processes (`other`, as for syscalls) unless a live
    // process shares its group.
    let others =
        |scrape: &str| ["w_to_x", "x_to_w", "anon_exec"].map(|t| wx_total(scrape, "other", t));
    let before = others(&daemon.scrape());
    run.resume_and_finish();
    let deadline = Instant::now() + Duration::from_secs(15);
    let tracked = |s: &str| metric(s, "memmon_processes", "{group=\"jit_wx\"}").is_some();
    let mut scrape = daemon.scrape();
    while tracked(&scrape) {
        assert!(Instant::now() < deadline, "jit_wx still tracked:\n{scrape}");
        thread::sleep(Duration::from_millis(100));
        scrape = daemon.scrape();
    }
    let after = others(&scrape);
    for i in 0..3 {
        assert!(
            after[i] - before[i] >= n,
            "after exit: {before:?} -> {after:?}\n{scrape}"
        );
    }
}

#[test]
fn a_user_sees_the_transitions_of_their_own_process() {
    if !require_bpf() {
        return;
    }
    let daemon = daemon();
    let (dir, program) = compiled("jit_wx", &[]);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let user = test_user();
    let mut run = spawn_as_user(&program, &[]);
    run.checkpoint("done");
    let pid = run.pid;
    events_until(&daemon, pid, "transitions", |e| e.len() >= 3);
    let listed = wx_events(&daemon, Some(user), None);
    assert!(listed.iter().any(|e| e["pid"] == pid), "{listed:#?}");
    let one = wx_events(&daemon, Some(user), Some(pid));
    assert!(
        !one.is_empty() && one.iter().all(|e| e["pid"] == pid),
        "{one:#?}"
    );
    run.resume_and_finish();
}

// ---- real runtimes ------------------------------------------------------

/// The path of `command` as /proc shows the mapped file (links resolved);
/// None (after a visible skip, or a panic under CI) when not installed.
fn installed(command: &str, package: &str) -> Option<std::path::PathBuf> {
    let (ok, path) = sh("sh", &["-c", &format!("command -v {command}")]);
    if !ok {
        skip(
            &format!("the {command} test"),
            format!("{command} is not installed (`cargo xtask setup` installs {package})"),
        );
        return None;
    }
    Some(fs::canonicalize(path.trim()).unwrap())
}

/// A runtime started by a test, killed with it.
struct Runtime {
    child: std::process::Child,
    out: LineCollector,
}

impl Runtime {
    fn spawn(cmd: &mut Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn runtime");
        let out = LineCollector::new(child.stdout.take().unwrap());
        Self { child, out }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&self) {
        let ready = self
            .out
            .wait_for(|l| l.starts_with("ready"), Duration::from_secs(60));
        assert!(
            ready.is_some(),
            "the runtime never said ready: {:?}",
            self.out.all()
        );
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// W^X events of `pid` whose call site is in `object`, waited for.
fn runtime_events(daemon: &Daemon, pid: u32, object: &Path) -> Vec<Value> {
    let object = object.to_str().unwrap();
    let events = events_until(
        daemon,
        pid,
        &format!("W^X event called from {object}"),
        |e| e.iter().any(|e| call_site(e).0 == Some(object)),
    );
    // What the runtime did, for the record (the report quotes it).
    for e in &events {
        eprintln!(
            "{} {} {} {}-{} {}->{} from {:?}+{:#x}",
            e["comm"],
            e["syscall"],
            e["kind"],
            e["start"],
            e["end"],
            e["old"],
            e["new"],
            call_site(e).0,
            call_site(e).1,
        );
    }
    events
}

/// JS hot enough for V8 to compile optimized code, then idle.
const HOT_JS: &str = "function f(x) { return x * 2 + 1 } let s = 0; \
    for (let i = 0; i < 1e7; i++) s += f(i); \
    console.log('ready ' + s); setTimeout(() => {}, 120000);";

#[test]
fn node_jit_code_space_shows_with_a_call_site_in_node() {
    if !require_bpf() {
        return;
    }
    let Some(node) = installed("node", "nodejs") else {
        return;
    };
    let daemon = daemon();
    let run = Runtime::spawn(Command::new(&node).args(["-e", HOT_JS]));
    run.wait_ready();
    let events = runtime_events(&daemon, run.pid(), &node);
    let from_node: Vec<&Value> = events
        .iter()
        .filter(|e| call_site(e).0 == node.to_str())
        .collect();
    // V8 maps its code space RWX (mprotect of reserved memory).
    assert!(
        from_node.iter().any(|e| e["kind"] == "created_wx"),
        "no created_wx from node: {events:#?}"
    );
    let scrape = daemon.scrape();
    assert!(wx_total(&scrape, "node", "created_wx") >= 1.0, "{scrape}");
}

#[test]
fn java_code_cache_shows_with_a_call_site_in_libjvm() {
    if !require_bpf() {
        return;
    }
    let (Some(java), Some(javac)) = (
        installed("java", "default-jre-headless"),
        installed("javac", "default-jdk-headless"),
    ) else {
        return;
    };
    let daemon = daemon();
    let dir = TempDir::new("java");
    let source = dir.path().join("Idle.java");
    fs::write(
        &source,
        "public class Idle { public static void main(String[] a) throws Exception { \
         System.out.println(\"ready\"); Thread.sleep(120000); } }",
    )
    .unwrap();
    let out = Command::new(&javac)
        .arg("-d")
        .arg(dir.path())
        .arg(&source)
        .output()
        .unwrap();
    assert!(out.status.success(), "javac: {}", output_text(&out));
    let run = Runtime::spawn(Command::new(&java).arg("-cp").arg(dir.path()).arg("Idle"));
    run.wait_ready();
    // libjvm.so lives beside the java binary's JDK: find it in the maps.
    let maps = maps_of(run.pid());
    let libjvm = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libjvm.so"))
        .unwrap_or_else(|| panic!("no libjvm.so in:\n{maps}"))
        .to_owned();
    let events = runtime_events(&daemon, run.pid(), Path::new(&libjvm));
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "created_wx" && call_site(e).0 == Some(libjvm.as_str())),
        "no created_wx from libjvm.so: {events:#?}"
    );
    let scrape = daemon.scrape();
    assert!(wx_total(&scrape, "java", "created_wx") >= 1.0, "{scrape}");
}
