//! Files behind mappings are identified by the kernel programs at the
//! mmap itself (issue 9, item 1): a program that dlopens 50 libraries
//! while both cores are busy has every region's path and offset right at
//! its first checkpoint, with the periodic verification off. Libraries sit
//! in a plain directory, behind a bind mount, under a deep path the kernel
//! walk still covers, and under one too long for it (named from /proc
//! instead); an unlinked file and a memfd show as the kernel shows them.
//!
//! Run as root: `cargo test -p memmon --test file_identity`.

mod support;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
};

use support::{
    Daemon, Stopped, TempDir, Trace, assert_agrees, compile, maps_of, metric, query_json,
    require_bpf,
};

/// Keeps every core busy until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A bind mount, unmounted on drop.
struct BindMount(PathBuf);

impl BindMount {
    fn new(from: &Path, to: &Path) -> Self {
        fs::create_dir_all(to).unwrap();
        let status = Command::new("mount")
            .arg("--bind")
            .arg(from)
            .arg(to)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount --bind failed: {status}");
        Self(to.to_owned())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `count` copies of `lib` (distinct inodes, so the loader maps each)
/// in `dir`, named from `tag`.
fn copies(lib: &Path, dir: &Path, tag: &str, count: usize) -> Vec<PathBuf> {
    fs::create_dir_all(dir).unwrap();
    (0..count)
        .map(|i| {
            let path = dir.join(format!("lib{tag}{i}.so"));
            fs::copy(lib, &path).unwrap();
            path
        })
        .collect()
}

#[test]
fn dlopened_libraries_under_load_have_their_paths_and_offsets_at_the_first_checkpoint() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("file_identity");
    let lib = compile(&dir, "tiny_lib", &["-shared", "-fPIC"]);
    let program = compile(&dir, "dlopen_many", &["-ldl"]);
    let root = dir.path();

    let mut libs = copies(&lib, &root.join("plain"), "p", 35);
    // Behind a bind mount: /proc names the file by the mount it was opened through.
    let _ = copies(&lib, &root.join("bound-src"), "b", 5);
    let bound = BindMount::new(&root.join("bound-src"), &root.join("bound"));
    libs.extend((0..5).map(|i| root.join("bound").join(format!("libb{i}.so"))));
    // 8 more components: deep, but within the kernel walk's reach.
    let deep: PathBuf = (0..8).map(|i| format!("d{i}")).collect();
    libs.extend(copies(&lib, &root.join(deep), "d", 5));
    // Over 512 bytes and 16 components: the kernel walk gives up; /proc names it.
    let long: PathBuf = (0..24)
        .map(|i| format!("{i:02}{}", "x".repeat(22)))
        .collect();
    libs.extend(copies(&lib, &root.join(long), "l", 5));
    assert_eq!(libs.len(), 50);
    let within_reach = 45;

    let daemon = Daemon::start_with(&["--verify-interval", "0"]);
    let trace = Trace::start(&["--comm", "dlopen_many", "--json"], true);
    let load = Load::start();
    let deleted = root.join("unlinked-data");
    let mut args: Vec<&str> = vec![deleted.to_str().unwrap()];
    args.extend(libs.iter().map(|p| p.to_str().unwrap()));
    let mut run = Stopped::spawn(&program, &args);
    let cp = run.checkpoint("loaded");
    drop(load);
    let events = trace.stop().events;

    // The kernel named every file it could reach at the mmap itself.
    let kernel_paths: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "mmap")
        .filter_map(|e| e["path"].as_str())
        .collect();
    for (i, lib) in libs.iter().enumerate() {
        let named = kernel_paths.contains(&lib.to_str().unwrap());
        assert_eq!(
            named,
            i < within_reach,
            "{}: the kernel {} its path; its mmaps: {kernel_paths:?}",
            lib.display(),
            if named { "read" } else { "did not read" }
        );
    }

    let maps = maps_of(run.pid);
    let layout = query_json(None, daemon.socket(), run.pid, &[]);
    assert_agrees(&layout, &maps);
    for lib in &libs {
        assert!(
            maps.contains(lib.to_str().unwrap()),
            "{} is not mapped:\n{maps}",
            lib.display()
        );
    }
    let regions = layout["regions"].as_array().unwrap();
    let paths: Vec<&str> = regions.iter().filter_map(|r| r["path"].as_str()).collect();
    assert!(
        paths.contains(&format!("{} (deleted)", deleted.display()).as_str()),
        "{paths:?}"
    );
    let memfd = regions
        .iter()
        .find(|r| support::hex(&r["start"]) == cp.hex("addr"))
        .expect("the memfd mapping is modelled");
    assert_eq!(memfd["path"], "/memfd:dlopen_many (deleted)", "{memfd}");
    assert_eq!(memfd["offset"], 8192, "{memfd}");

    // The too-long directory's libraries were named through a resync.
    let text = daemon.scrape();
    let from_proc =
        metric(&text, "memmon_resyncs_total", r#"{reason="unresolved"}"#).unwrap_or(0.0);
    assert!(
        from_proc >= 1.0,
        "no resync for the paths too long for the kernel walk"
    );
    run.resume_and_finish();
    drop(bound);
}
