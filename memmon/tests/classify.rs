//! Acceptance of the classifier and the ASLR rules, through the real
//! daemon and `memmon query`: a fixture holds every kind of region at one
//! checkpoint and prints an address inside each; the layout must name the
//! region holding each address correctly.
//!
//! Run as root: `cargo test -p memmon --test classify`.

mod support;

use serde_json::Value;
use support::{
    Daemon, Stopped, compiled, hex, memmon, query_json, region_at, require_bpf, shared_daemon,
};

fn query(daemon: &Daemon, pid: u32, extra: &[&str]) -> String {
    let pid = pid.to_string();
    let args: Vec<&str> = ["query", pid.as_str()]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    memmon(None, daemon.socket(), &args).ok().to_owned()
}

fn layout(daemon: &Daemon, pid: u32) -> Value {
    query_json(None, daemon.socket(), pid, &[])
}

fn kind_at(layout: &Value, addr: u64) -> String {
    region_at(layout, addr)["kind"].as_str().unwrap().to_owned()
}

/// Runs the fixture (with `wrapper` in front, e.g. `setarch -R`) to its
/// checkpoint and hands its layout to `check`.
fn at_checkpoint(
    flags: &[&str],
    wrapper: &[&str],
    check: impl FnOnce(&Value, &support::Checkpoint),
) {
    let daemon = Daemon::shared();
    let (_dir, program) = compiled("classify_me", flags);
    let mut run = if wrapper.is_empty() {
        Stopped::spawn(&program, &[])
    } else {
        let mut args: Vec<&str> = wrapper[1..].to_vec();
        let program = program.to_str().unwrap().to_owned();
        args.push(&program);
        // setarch execs the fixture in place: the pid stays the same.
        Stopped::spawn(std::path::Path::new(wrapper[0]), &args)
    };
    let cp = run.checkpoint("layout");
    daemon.assert_verified(run.pid, "classify_me: layout");
    let layout = layout(daemon, run.pid);
    check(&layout, &cp);
    run.resume_and_finish();
}

#[test]
fn every_region_of_the_fixture_gets_its_seed_document_name() {
    if !require_bpf() {
        return;
    }
    at_checkpoint(&[], &[], |layout, cp| {
        let exe = layout["exe"].as_str().unwrap().to_owned();
        for (fact, kind) in [
            ("text", "text"),
            ("rodata", "rodata"),
            ("data", "data"),
            ("bss", "bss"),
            ("heap", "heap"),
            ("chunk", "mmap-chunk"),
            ("arena", "arena"),
            ("thread_stack", "thread-stack"),
            ("stack", "stack"),
            ("libc_text", "text"),
        ] {
            let addr = cp.hex(fact);
            assert_eq!(
                kind_at(layout, addr),
                kind,
                "{fact} at {addr:#x}: {}",
                region_at(layout, addr)
            );
        }
        assert_eq!(region_at(layout, cp.hex("text"))["object"], exe.as_str());
        assert_eq!(region_at(layout, cp.hex("bss"))["object"], exe.as_str());
        let libc = region_at(layout, cp.hex("libc_text"))["object"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(libc.contains("libc.so"), "getpid's text belongs to {libc}");
        // The guard page sits right below the thread's stack.
        let stack_start = hex(&region_at(layout, cp.hex("thread_stack"))["start"]);
        let below = region_at(layout, stack_start - 1);
        assert_eq!(below["kind"], "guard", "below the thread stack: {below}");
        assert_eq!(below["perms"], "---p");
        // The arena: 64 MiB aligned, read-write head, PROT_NONE tail.
        let arena = region_at(layout, cp.hex("arena"));
        assert_eq!(hex(&arena["start"]) % (64 << 20), 0, "arena head {arena}");
        // The heap is malloc(1000) + 128 KiB of top pad: 132 KiB.
        assert_eq!(layout["heap"]["size"], 132 * 1024, "{}", layout["heap"]);
        let kinds: Vec<&str> = layout["regions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kind"].as_str().unwrap())
            .collect();
        for special in ["vdso", "vvar", "vsyscall", "stack"] {
            assert!(kinds.contains(&special), "no {special} region in {kinds:?}");
        }
        assert_eq!(layout["elf"]["elf_type"], "DYN");
        assert_eq!(layout["elf"]["pie"], true);
        // Every mapped ELF object has its view: libc is a DYN but no PIE,
        // and its R E segment holds .text at a live load bias.
        let objects = layout["objects"].as_array().unwrap();
        let libc_view = objects
            .iter()
            .find(|o| o["path"].as_str() == Some(libc.as_str()))
            .unwrap_or_else(|| panic!("no ELF view of {libc}"));
        assert_eq!(libc_view["elf_type"], "DYN");
        assert_eq!(libc_view["pie"], false);
        assert!(libc_view["load_bias"].is_string(), "{libc_view}");
        assert!(
            libc_view["segments"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["type"] == "LOAD"
                    && s["flags"] == "R E"
                    && s["sections"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|n| n == ".text")),
            "{libc_view}"
        );
        assert!(
            layout["wx"].as_array().unwrap().is_empty(),
            "{}",
            layout["wx"]
        );
    });
}

#[test]
fn the_human_table_shows_the_132_kib_heap_and_gaps_in_binary_units() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let (_dir, program) = compiled("classify_me", &[]);
    let mut run = Stopped::spawn(&program, &[]);
    run.checkpoint("layout");
    daemon.assert_verified(run.pid, "classify_me: layout");
    let table = query(daemon, run.pid, &[]);
    let heap = table
        .lines()
        .find(|l| l.trim_end().ends_with("[heap]"))
        .expect("a [heap] row");
    assert!(
        heap.contains("132 KiB") && heap.contains(" heap "),
        "{heap}"
    );
    let gaps: Vec<&str> = table.lines().filter(|l| l.contains("-- gap ")).collect();
    assert!(
        gaps.iter().any(|g| g.contains("TiB") || g.contains("GiB")),
        "gaps: {gaps:#?}"
    );
    assert!(table.contains("ASLR full"), "{table}");
    run.resume_and_finish();
}

#[test]
fn aslr_is_off_under_setarch_r() {
    if !require_bpf() {
        return;
    }
    at_checkpoint(&[], &["setarch", "-R"], |layout, _| {
        assert_eq!(layout["aslr"]["status"], "off", "{}", layout["aslr"]);
        let reasons = layout["aslr"]["reasons"].to_string();
        assert!(
            reasons.contains("ADDR_NO_RANDOMIZE") || reasons.contains("setarch"),
            "{reasons}"
        );
    });
}

#[test]
fn aslr_is_partial_for_a_non_pie_executable() {
    if !require_bpf() {
        return;
    }
    at_checkpoint(&["-no-pie"], &[], |layout, cp| {
        assert_eq!(layout["aslr"]["status"], "partial", "{}", layout["aslr"]);
        assert_eq!(layout["elf"]["elf_type"], "EXEC");
        assert_eq!(layout["elf"]["pie"], false);
        assert!(
            cp.hex("text") < 0x1000_0000,
            "non-PIE text at {:#x}",
            cp.hex("text")
        );
        assert_eq!(kind_at(layout, cp.hex("text")), "text");
    });
}
