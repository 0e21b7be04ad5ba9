//! The kernel's own rule for /proc/PID/maps decides what an unprivileged
//! user may ask about: not their non-dumpable or setgid processes, not
//! thread ids, not an image exec'd since they opened the maps; and "no
//! such process" reads exactly like "not yours".
//!
//! Run as root: `cargo test -p memmon --test kernel_rule`. The tests create
//! (and leave in place) a user and group `memmon-test`.

mod support;

use std::{
    fs,
    io::Write as _,
    os::{
        fd::AsFd as _,
        unix::fs::{PermissionsExt as _, chown},
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use memmon::{
    client::{Client, ClientError},
    protocol::{ErrorKind, Request, unseen},
};
use support::{
    Daemon, Stopped, TempDir, TestUser, compile, fixture, free_pid, group_daemon, memmon,
    output_text, query_json, require_bpf, spawn_as_user, test_user,
};

/// Set (to "SOCKET:SETUID_PROGRAM") when this binary runs as the exec-race
/// client, as the test user.
const EXEC_RACE: &str = "MEMMON_EXEC_RACE";

fn user_and_daemon() -> Option<(&'static TestUser, Daemon)> {
    require_bpf().then(|| (test_user(), group_daemon()))
}

/// `memmon query PID` as `user`: its one-line error, checked to be the one
/// answer for "no such process" and "not yours", with the pid written PID.
fn refusal(user: &TestUser, socket: &Path, pid: u32) -> String {
    let err = memmon(Some(user), socket, &["query", &pid.to_string(), "--json"]).one_line_error();
    assert!(err.contains(&unseen(pid).message), "pid {pid}: {err}");
    err.replace(&pid.to_string(), "PID")
}

/// A directory the test user may enter, holding `name`.
fn open_dir(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn a_users_own_process_is_shown_but_not_when_the_kernel_hides_it() {
    let Some((user, daemon)) = user_and_daemon() else {
        return;
    };
    let socket = daemon.socket();
    let (_dir, program) = fixture("kernel-rule");

    // (a) Their own ordinary process: shown.
    let mut mine = spawn_as_user(&program, &[]);
    mine.checkpoint("ready");
    daemon.assert_verified(mine.pid, "own query_me: ready");
    assert_eq!(
        query_json(Some(user), socket, mine.pid, &[])["pid"],
        mine.pid
    );

    // (b) Their own process made non-dumpable: the kernel refuses its
    // maps to them, and so does the daemon, in queries and lists.
    let mut nodump = spawn_as_user(&program, &["nodump"]);
    nodump.checkpoint("ready");
    daemon.assert_verified(nodump.pid, "non-dumpable query_me: ready");
    let expected = refusal(user, socket, free_pid());
    assert_eq!(refusal(user, socket, nodump.pid), expected);

    // (c) A setgid program they started (group root, which they are not in).
    let setgid_dir = open_dir("kernel-rule-setgid");
    let setgid = compile(&setgid_dir, "query_me", &[]);
    chown(&setgid, None, Some(0)).unwrap();
    fs::set_permissions(&setgid, fs::Permissions::from_mode(0o2755)).unwrap();
    let mut sgid = spawn_as_user(&setgid, &[]);
    sgid.checkpoint("ready");
    let egid = fs::read_to_string(format!("/proc/{}/status", sgid.pid)).unwrap();
    assert!(
        egid.lines()
            .any(|l| l.starts_with("Gid:") && l.split_whitespace().nth(2) == Some("0")),
        "the fixture did not run setgid root: {egid}"
    );
    daemon.assert_verified(sgid.pid, "setgid query_me: ready");
    assert_eq!(refusal(user, socket, sgid.pid), expected);

    // Lists: the user's own process, and neither hidden one.
    for cmd in ["ps", "aslr", "wx"] {
        let listed = support::listing(Some(user), socket, &[cmd, "--json"]);
        let pids: Vec<u64> = listed.iter().filter_map(|p| p["pid"].as_u64()).collect();
        // aslr and wx list only processes with findings.
        if cmd == "ps" {
            assert!(pids.contains(&u64::from(mine.pid)), "{cmd}: {listed:?}");
        }
        for hidden in [nodump.pid, sgid.pid] {
            assert!(
                !pids.contains(&u64::from(hidden)),
                "{cmd} lists {hidden}: {listed:?}"
            );
        }
    }
    // Root sees all three.
    for pid in [mine.pid, nodump.pid, sgid.pid] {
        assert_eq!(query_json(None, socket, pid, &[])["pid"], pid);
    }
    for run in [mine, nodump, sgid] {
        run.resume_and_finish();
    }
}

#[test]
fn missing_foreign_and_thread_ids_get_one_answer() {
    let Some((user, daemon)) = user_and_daemon() else {
        return;
    };
    let socket = daemon.socket();
    // (d) A pid that does not exist, and root's process.
    let missing = refusal(user, socket, free_pid());
    let (_dir, program) = fixture("kernel-rule-ids");
    let mut roots = Stopped::spawn(&program, &[]);
    roots.checkpoint("ready");
    daemon.assert_verified(roots.pid, "root's query_me: ready");
    assert_eq!(refusal(user, socket, roots.pid), missing, "root's process");

    // (e) A thread of the user's own process: refused as missing, and for
    // root too (a thread id is not a process).
    let threads_dir = open_dir("kernel-rule-threads");
    let threads = compile(&threads_dir, "many_threads", &[]);
    let mut run = spawn_as_user(&threads, &[]);
    run.checkpoint("start");
    run.resume();
    run.checkpoint("all-alive");
    let tid = fs::read_dir(format!("/proc/{}/task", run.pid))
        .unwrap()
        .filter_map(|t| t.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|&t| t != run.pid)
        .expect("a thread");
    assert!(query_json(Some(user), socket, run.pid, &[])["pid"] == run.pid);
    assert_eq!(refusal(user, socket, tid), missing, "thread {tid}");
    let root = memmon(None, socket, &["query", &tid.to_string(), "--json"]).one_line_error();
    assert!(
        root.contains(&unseen(tid).message),
        "root, thread {tid}: {root}"
    );

    roots.resume_and_finish();
    run.resume();
    run.checkpoint("joined");
    run.resume_and_finish();
}

/// (f) The maps the user opened before their process exec'd a setuid-root
/// program: the daemon reads it after building the reply, finds the old
/// image gone, and refuses.
#[test]
fn an_exec_to_setuid_root_since_the_maps_were_opened_is_refused() {
    let Some((user, daemon)) = user_and_daemon() else {
        return;
    };
    let bin = open_dir("kernel-rule-bin");
    let sleeper = bin.path().join("sleep");
    fs::copy("/bin/sleep", &sleeper).unwrap();
    fs::set_permissions(&sleeper, fs::Permissions::from_mode(0o4755)).unwrap();
    let me = bin.path().join("kernel_rule");
    fs::copy(std::env::current_exe().unwrap(), &me).unwrap();
    fs::set_permissions(&me, fs::Permissions::from_mode(0o755)).unwrap();

    // A child forked by another test may still hold the copy's write
    // descriptor for a moment (ETXTBSY): run again until it lets go.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (out, text) = loop {
        let out = user
            .command()
            .arg(&me)
            .args([
                "--exact",
                "exec_race_client",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                EXEC_RACE,
                format!("{}:{}", daemon.socket().display(), sleeper.display()),
            )
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = output_text(&out);
        if !text.contains("Text file busy") || Instant::now() > deadline {
            break (out, text);
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("exec race: refused"),
        "the client did not run: {text}"
    );
}

/// The exec-race client (a test only when [`EXEC_RACE`] is set): run as
/// the test user by the test above.
#[test]
fn exec_race_client() {
    let Ok(setting) = std::env::var(EXEC_RACE) else {
        return;
    };
    let (socket, setuid) = setting.split_once(':').unwrap();
    let mut target = Command::new("sh")
        .args(["-c", r#"read _ && exec "$0" 60"#, setuid])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = target.id();
    let mut client = Client::connect(Path::new(socket)).unwrap();
    let query = || Request::Query {
        pid,
        events: 0,
        rss: false,
        origins: false,
        render: None,
    };
    // Shown before the exec (retried while its first snapshot is pending).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.request(query()) {
            Ok(_) => break,
            Err(e) if e.kind() == Some(ErrorKind::NotReady) && Instant::now() < deadline => {}
            Err(e) => panic!("query of pid {pid} before the exec: {e}"),
        }
    }
    let maps = fs::File::open(format!("/proc/{pid}/maps")).unwrap();
    target.stdin.take().unwrap().write_all(b"\n").unwrap();
    let comm = PathBuf::from(setuid).file_name().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap()
        .trim()
        != comm
    {
        assert!(Instant::now() < deadline, "pid {pid} did not exec {setuid}");
        thread::sleep(Duration::from_millis(5));
    }
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:"));
    assert_eq!(
        euid.and_then(|u| u.split_whitespace().nth(1)),
        Some("0"),
        "{status}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        match client.request_with_maps(query(), Some(maps.as_fd())) {
            Err(e) if e.kind() == Some(ErrorKind::NotReady) && Instant::now() < deadline => {}
            Err(ClientError::Daemon(e)) => break e,
            other => panic!("the old maps of pid {pid} were accepted: {other:?}"),
        }
    };
    assert_eq!(refused.kind, unseen(pid).kind);
    assert_eq!(refused.message, unseen(pid).message);
    println!("exec race: refused");
    let _ = target.kill();
    let _ = target.wait();
}
