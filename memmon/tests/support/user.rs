//! The unprivileged user `memmon-test` (created when missing, and left in
//! place), and running programs and daemons for it.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use super::MEMMON;
use super::daemon::Daemon;
use super::fixtures::TempDir;
use super::process::output_text;
use super::stopped::Stopped;

pub const TEST_USER: &str = "memmon-test";

/// setpriv's arguments to run a program as the test user, with its groups.
const AS_USER: [&str; 6] = [
    "--reuid",
    TEST_USER,
    "--regid",
    TEST_USER,
    "--init-groups",
    "--",
];

pub struct TestUser {
    pub uid: u32,
    /// A memmon binary this user may execute.
    pub memmon: PathBuf,
    _dir: Option<TempDir>,
}

impl TestUser {
    /// A command that runs as the user, with its groups.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args(AS_USER);
        cmd
    }
}

pub fn sh(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    (out.status.success(), output_text(&out))
}

/// The user and group `memmon-test`, created when missing (and left in place).
pub fn test_user() -> &'static TestUser {
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
pub fn group_daemon() -> Daemon {
    let daemon = Daemon::start_with(&["--socket-group", TEST_USER]);
    let dir = daemon.socket().parent().unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    daemon
}

/// `program args` as the test user; setpriv execs it in place.
pub fn spawn_as_user(program: &Path, args: &[&str]) -> Stopped {
    let mut all = AS_USER.to_vec();
    all.push(program.to_str().unwrap());
    all.extend_from_slice(args);
    Stopped::spawn(Path::new("setpriv"), &all)
}
