//! A user can stop the FUSE server behind a file a process maps: the
//! daemon must keep answering and draining events while the server is
//! stopped, and catch up once it runs again.
//!
//! squashfuse serves a squashfs image (a compiled ELF and a data file);
//! a fixture maps both; the daemon starts; the server gets SIGSTOP. For
//! 10 s, `ps`, `query` of another process and of the mapping process, and
//! a scrape each answer within 1 s while `churn` maps and unmaps and no
//! event is lost. After SIGCONT the model agrees with /proc.
//!
//! Run as root: `cargo test -p memmon --test fuse`.

mod support;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use support::{
    Daemon, QueryMe, Stopped, TempDir, compile, listing, metric, query_json, region_at,
    require_bpf, run_to_end, signal, skip, wait_stopped, wait_timeout, within,
};

/// How long the server stays stopped, and the most any call may take then.
const STOPPED_FOR: Duration = Duration::from_secs(10);
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// The note on regions of a FUSE file with `read_elf_on_network_fs` off
/// (memmon::report::elf_reader::SKIPPED_REMOTE).
const SKIPPED_REMOTE: &str = "not read (FUSE or network filesystem)";

/// The commands this test runs that the eBPF tests do not.
const TOOLS: &[&str] = &["mksquashfs", "squashfuse", "fusermount3"];

fn tools_present() -> bool {
    let missing: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|tool| {
            !std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
        })
        .collect();
    if missing.is_empty() && Path::new("/dev/fuse").exists() {
        return true;
    }
    skip(
        "the FUSE test",
        format!(
            "missing {missing:?} or /dev/fuse: run `cargo xtask setup` (fuse3, squashfuse, \
             squashfs-tools)"
        ),
    );
    false
}

/// A squashfs image served by `squashfuse -f` on a temp dir. On drop (also
/// when the test fails) the server is resumed, then unmounted and reaped.
struct FuseMount {
    server: Child,
    mountpoint: PathBuf,
    _dir: TempDir,
}

impl FuseMount {
    /// Packs `files` (name, contents) into an image and mounts it.
    fn serve(files: &[(&str, &[u8])]) -> Self {
        let dir = TempDir::new("fuse");
        let content = dir.path().join("content");
        let mountpoint = dir.path().join("mnt");
        fs::create_dir(&content).unwrap();
        fs::create_dir(&mountpoint).unwrap();
        for (name, bytes) in files {
            fs::write(content.join(name), bytes).unwrap();
        }
        let image = dir.path().join("image.squashfs");
        let packed = Command::new("mksquashfs")
            .arg(&content)
            .arg(&image)
            .args(["-noappend", "-quiet", "-no-progress"])
            .output()
            .expect("run mksquashfs");
        assert!(
            packed.status.success(),
            "mksquashfs failed: {}",
            String::from_utf8_lossy(&packed.stderr)
        );
        // No attribute cache: every stat of a file on the mount asks the
        // server, so a stat the daemon makes while it is stopped blocks.
        let server = Command::new("squashfuse")
            .args(["-f", "-o", "attr_timeout=0"])
            .arg(&image)
            .arg(&mountpoint)
            .stdin(Stdio::null())
            .spawn()
            .expect("run squashfuse");
        let mount = Self {
            server,
            mountpoint,
            _dir: dir,
        };
        let first = mount.path(files[0].0);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !first.exists() {
            assert!(
                Instant::now() < deadline,
                "squashfuse never served {first:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        mount
    }

    fn path(&self, name: &str) -> PathBuf {
        self.mountpoint.join(name)
    }

    fn pid(&self) -> i32 {
        self.server.id() as i32
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        signal(self.pid(), libc::SIGCONT);
        let unmounted = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.mountpoint)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a mapping process not reaped yet): detach it.
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mountpoint)
                .status();
        }
        if wait_timeout(&mut self.server, Duration::from_secs(10)).is_none() {
            let _ = self.server.kill();
            let _ = self.server.wait();
        }
    }
}

/// Runs `churn` (mmap+munmap pairs) again and again until `stop`.
fn churn_until(program: PathBuf, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut runs = 0;
        while !stop.load(Ordering::Relaxed) {
            let (status, _, _) = run_to_end(&program, &["20000"], Duration::from_secs(60));
            assert!(status.success(), "churn failed: {status}");
            runs += 1;
        }
        runs
    })
}

#[test]
fn a_stopped_fuse_server_stalls_no_answer_and_loses_no_event() {
    if !require_bpf() || !tools_present() {
        return;
    }
    let bin = TempDir::new("fuse-bin");
    let map_files = compile(&bin, "map_files", &[]);
    let churn = compile(&bin, "churn", &[]);
    let elf = fs::read(&map_files).unwrap();
    let data = vec![0x5au8; 64 * 1024];
    let mount = FuseMount::serve(&[("prog.elf", &elf), ("data.bin", &data)]);
    let elf_arg = format!("rx:{}", mount.path("prog.elf").display());
    let data_arg = format!("r:{}", mount.path("data.bin").display());
    let mut mapper = Stopped::spawn(&map_files, &["1", &elf_arg, &data_arg]);
    let mapped = mapper.checkpoint("mapped");

    let daemon = Daemon::start();
    daemon.assert_verified(mapper.pid, "map_files: mapped");
    let other = QueryMe::start(&daemon, "fuse-other");
    let lost_before = metric(&daemon.scrape(), "memmon_events_lost_total", "").unwrap();

    assert!(signal(mount.pid(), libc::SIGSTOP), "SIGSTOP squashfuse");
    wait_stopped(mount.pid() as u32, Duration::from_secs(5));
    // New mappings of the FUSE files while the server is stopped: from
    // fds the fixture holds, so the mapping itself needs no FUSE request.
    mapper.resume();
    let again = mapper.checkpoint("again");

    let stop = Arc::new(AtomicBool::new(false));
    let churning = churn_until(churn, stop.clone());
    let socket = daemon.socket();
    let (mut calls, mut slowest) = (0u32, Duration::ZERO);
    let started = Instant::now();
    while started.elapsed() < STOPPED_FOR {
        let mut note = |took: Duration| {
            calls += 1;
            slowest = slowest.max(took);
        };
        let (ps, took) = within(ANSWER_WITHIN, "memmon ps", || {
            listing(None, socket, &["ps", "--json"])
        });
        note(took);
        assert!(!ps.is_empty(), "memmon ps listed nothing");
        let (layout, took) = within(ANSWER_WITHIN, "memmon query of another process", || {
            query_json(None, socket, other.run.pid, &[])
        });
        note(took);
        assert_eq!(layout["pid"], other.run.pid, "{layout}");
        let (layout, took) = within(ANSWER_WITHIN, "memmon query of the FUSE mapper", || {
            query_json(None, socket, mapper.pid, &[])
        });
        note(took);
        for addr in [mapped.hex("map0"), mapped.hex("map1")] {
            let region = region_at(&layout, addr);
            let why = region["note"].as_str().unwrap_or_default();
            assert!(
                why == SKIPPED_REMOTE || why.contains("timed out"),
                "a FUSE file's region while its server is stopped: {region}"
            );
        }
        let (text, took) = within(ANSWER_WITHIN, "a scrape of /metrics", || daemon.scrape());
        note(took);
        assert!(text.contains("memmon_events_total"), "{text}");
    }
    stop.store(true, Ordering::Relaxed);
    let churns = churning.join().expect("churn thread");
    eprintln!(
        "server stopped {STOPPED_FOR:?}: {calls} calls, slowest {slowest:?}, {churns} churn runs"
    );
    assert!(churns > 0, "churn never ran while the server was stopped");

    assert!(signal(mount.pid(), libc::SIGCONT), "SIGCONT squashfuse");
    let lost_after = metric(&daemon.scrape(), "memmon_events_lost_total", "").unwrap();
    assert_eq!(
        lost_after, lost_before,
        "events were lost while the FUSE server was stopped"
    );
    daemon.assert_verified(mapper.pid, "map_files: again, server resumed");
    let layout = query_json(None, socket, mapper.pid, &[]);
    for key in ["map0", "map1", "again0", "again1"] {
        let fact = if key.starts_with("map") {
            &mapped
        } else {
            &again
        };
        let region = region_at(&layout, fact.hex(key));
        // read_elf_on_network_fs is off: a FUSE file is never read, so
        // even the ELF is a plain file mapping, and says why.
        assert_eq!(region["kind"], "file", "{key}: {region}");
        assert_eq!(region["note"], SKIPPED_REMOTE, "{key}: {region}");
    }
    mapper.resume_and_finish();
    other.run.resume_and_finish();
    drop(mount);
}
