//! Who may see what: an unprivileged user, through a `--socket-group`
//! socket, sees only their own processes, and not even those it started
//! setuid root.
//!
//! Run as root: `cargo test -p memmon --test access`. The tests create
//! (and leave in place) a user and group `memmon-test`.

mod support;

use std::{fs, os::unix::fs::PermissionsExt as _, path::Path};

use support::{
    Daemon, Stopped, TEST_USER, TestUser, assert_agrees, check_ps_entry, entry_for, fixture,
    group_daemon, listing, maps_of, memmon, query_json, require_bpf, sh, spawn_as_user, test_user,
};

/// `memmon <args>` as `user` is refused for want of permission, in one
/// line with nothing on stdout.
fn assert_refused(user: &TestUser, socket: &Path, args: &[&str]) {
    let err = memmon(Some(user), socket, args).one_line_error();
    assert!(
        err.contains("permission") || err.contains("another user"),
        "{err}"
    );
}

/// The test user and a daemon whose socket its group may use; None when
/// the eBPF tests cannot run here.
fn user_and_daemon() -> Option<(&'static TestUser, Daemon)> {
    require_bpf().then(|| (test_user(), group_daemon()))
}

#[test]
fn an_unprivileged_user_sees_only_their_own_processes() {
    let Some((user, daemon)) = user_and_daemon() else {
        return;
    };
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
    assert_refused(user, socket, &["query", &roots.pid.to_string(), "--json"]);
    assert_refused(user, socket, &["query", &roots.pid.to_string()]);
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
        run.resume_and_finish();
    }
    assert!(daemon.alive(), "{:?}", daemon.stderr());
}

/// A setuid-root program run by the user keeps the user's real uid, but
/// the kernel hides its maps from that user (they are not the same
/// credentials, and it is not dumpable): the daemon must not leak its
/// layout (and with it, its ASLR offsets) either.
#[test]
fn a_setuid_root_process_started_by_the_user_stays_hidden_from_them() {
    let Some((user, daemon)) = user_and_daemon() else {
        return;
    };
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
    assert_refused(user, socket, &["query", &run.pid.to_string(), "--json"]);
    run.resume_and_finish();
}
