//! `memmon top` in a real terminal (a tmux pane): it shows the fixture,
//! re-sorts on a key, filters, opens a layout, and exits on q; with stdout
//! redirected it prints one table.
//!
//! Run as root: `cargo test -p memmon --test top`.

mod support;

use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use support::{MEMMON, QueryMe, shared_daemon};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux (Debian package tmux; `cargo xtask setup` installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A detached tmux session running `command`, killed on drop.
struct Pane(String);

impl Pane {
    fn start(command: &str) -> Self {
        let name = format!("memmon-top-{}", std::process::id());
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-x",
                "220",
                "-y",
                "50",
                "-s",
                &name,
                command,
            ])
            .status()
            .expect("tmux");
        assert!(status.success(), "tmux new-session failed");
        Self(name)
    }

    fn screen(&self) -> String {
        tmux(&["capture-pane", "-p", "-t", &self.0])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.0];
        args.extend_from_slice(keys);
        tmux(&args);
    }

    /// The screen once `ready` holds for it, or a failure naming `what`.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "{what}; the screen:\n{screen}");
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        tmux(&["kill-session", "-t", &self.0]);
    }
}

/// The PID column of the table's rows, top to bottom.
fn pids(screen: &str) -> Vec<u32> {
    screen
        .lines()
        .filter_map(|l| l.trim_start_matches(['│', ' ']).split_whitespace().next())
        .filter_map(|w| w.parse().ok())
        .collect()
}

#[test]
fn top_shows_sorts_filters_opens_and_quits() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let me = QueryMe::start(daemon, "top");
    let pid = me.run.pid.to_string();
    let command = format!(
        "{MEMMON} top --interval 0.5 --socket {}; echo top-exited-$?; sleep 60",
        daemon.socket().display()
    );
    let pane = Pane::start(&command);
    // Among a busy machine's processes the fixture may be below the fold.
    pane.keys(&["/", "query_me", "Enter"]);
    let screen = pane.wait_for("top shows the fixture", |s| {
        s.contains("query_me") && pids(s).contains(&me.run.pid)
    });
    assert!(
        screen.contains("MAPPED▼"),
        "sorted by MAPPED at start:\n{screen}"
    );
    assert!(screen.contains("%MAXMAP"), "{screen}");

    // Six columns left is PID: ascending, then reversed with r.
    // Escape on its own: a terminal's Escape directly followed by an arrow
    // reads as one sequence, as it would if a person typed that fast.
    pane.keys(&["Escape"]);
    pane.wait_for("the filter cleared", |s| !s.contains("[query_me]"));
    pane.keys(&["Left", "Left", "Left", "Left", "Left", "Left"]);
    let screen = pane.wait_for("sorting by PID", |s| s.contains("PID▼"));
    let shown = pids(&screen);
    assert!(shown.len() > 1, "{screen}");
    assert!(shown.is_sorted(), "PIDs ascending: {shown:?}\n{screen}");
    pane.keys(&["r"]);
    let screen = pane.wait_for("reversing", |s| s.contains("PID▲"));
    let shown = pids(&screen);
    assert!(
        shown.is_sorted_by(|a, b| a >= b),
        "PIDs descending: {shown:?}\n{screen}"
    );

    // Filter to the fixture's comm, then open its layout.
    pane.keys(&["/", "query_me", "Enter"]);
    let screen = pane.wait_for("filtering", |s| s.contains("[query_me]"));
    let shown = pids(&screen);
    assert!(shown.contains(&me.run.pid), "{screen}");
    assert!(
        screen
            .lines()
            .filter(|l| pids(l).len() == 1)
            .all(|l| l.contains("query_me")),
        "only query_me rows:\n{screen}"
    );
    pane.keys(&["Up", "Up", "Up"]);
    // The fixture is the only query_me unless other tests run one too.
    if shown.len() == 1 {
        pane.keys(&["Enter"]);
        let screen = pane.wait_for("the layout pane", |s| {
            s.contains(&format!("pid {pid} (query_me)")) && s.contains("START")
        });
        assert!(screen.contains("ASLR"), "{screen}");
        pane.keys(&["Escape"]);
        pane.wait_for("back to the table", |s| s.contains("%MAXMAP"));
    }

    pane.keys(&["q"]);
    pane.wait_for("top exits on q", |s| s.contains("top-exited-0"));

    // Not a terminal: one table, then exit.
    let out = Command::new(MEMMON)
        .args(["top", "--socket"])
        .arg(daemon.socket())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let header = text.lines().next().unwrap_or_default();
    for column in [
        "PID", "COMM", "VMAS", "%MAXMAP", "MAPPED", "SYSC/S", "GROW/1M", "W^X",
    ] {
        assert!(header.contains(column), "no {column} in {header}");
    }
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().next() == Some(pid.as_str()) && l.contains("query_me")),
        "no fixture row:\n{text}"
    );
    assert!(!text.contains('\x1b'), "escape codes in redirected output");
}

#[test]
fn listings_hide_kernel_threads_unless_all() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let socket = daemon.socket();
    let kthreadd = support::listing(None, socket, &["ps", "--all", "--json"])
        .into_iter()
        .find(|p| p["comm"] == "kthreadd" && p["vmas"] == 0);
    // kthreadd is pid 2 in the host's pid namespace; elsewhere there may be
    // no kernel thread to see.
    let Some(kthreadd) = kthreadd else {
        assert!(
            std::fs::read_to_string("/proc/2/comm").map_or(true, |c| c.trim() != "kthreadd"),
            "ps --all does not list kthreadd"
        );
        return;
    };
    for command in ["ps", "aslr", "wx"] {
        let list = support::listing(None, socket, &[command, "--json"]);
        assert!(
            list.iter().all(|p| p["vmas"].as_u64() != Some(0)),
            "`memmon {command}` lists a kernel thread"
        );
        assert!(support::entry_for(&list, kthreadd["pid"].as_u64().unwrap() as u32).is_none());
    }
    assert!(
        !support::listing(None, socket, &["ps", "--json"]).is_empty(),
        "user processes are still listed"
    );
}
