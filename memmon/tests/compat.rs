//! Layout changes the syscall tracepoints do not show, or cannot describe:
//! 32-bit processes and `int 0x80` (the mmap-lock safety net resyncs
//! them), io_setup/io_destroy and remap_file_pages (resynced at once, see
//! `Syscall::resync_reason`). Each fixture stops at checkpoints, where the
//! daemon's model must equal /proc/PID/maps with periodic verification off.
//!
//! Run as root: `cargo test -p memmon --test compat`.

mod support;

use std::path::Path;

use support::{
    Daemon, Stopped, TempDir, compile, entry_for, listing, maps_line_at, maps_of, require_bpf,
};

fn daemon() -> Option<Daemon> {
    require_bpf().then(|| Daemon::start_with(&["--verify-interval", "0"]))
}

/// mapped -> rwx -> unmapped, each checked against /proc; `memmon wx`
/// lists the process exactly while its RWX page exists.
fn mmap_mprotect_munmap(daemon: &Daemon, program: &Path) {
    let mut run = Stopped::spawn(program, &[]);
    let wx_listed =
        |pid| entry_for(&listing(None, daemon.socket(), &["wx", "--json"]), pid).is_some();

    let cp = run.checkpoint("mapped");
    let region = cp.hex("addr");
    assert!(
        maps_line_at(run.pid, region).is_some(),
        "{}",
        maps_of(run.pid)
    );
    daemon.assert_verified(run.pid, "mapped");
    assert!(!wx_listed(run.pid), "listed by wx before any RWX page");
    run.resume();

    run.checkpoint("rwx");
    let rwx = maps_line_at(run.pid, region + 4096).expect("the RWX page");
    assert!(rwx.contains(" rwxp "), "{rwx}");
    daemon.assert_verified(run.pid, "rwx");
    assert!(wx_listed(run.pid), "`memmon wx` misses the RWX page");
    run.resume();

    run.checkpoint("unmapped");
    assert!(
        maps_line_at(run.pid, region).is_none(),
        "{}",
        maps_of(run.pid)
    );
    daemon.assert_verified(run.pid, "unmapped");
    assert!(!wx_listed(run.pid), "still listed by wx after munmap");
    run.resume_and_finish();
}

#[test]
fn a_32_bit_process_is_modelled_and_its_rwx_page_listed() {
    let Some(daemon) = daemon() else {
        return;
    };
    let dir = TempDir::new("compat32");
    // gcc-multilib (cargo xtask setup) provides the 32-bit runtime.
    let program = compile(&dir, "compat_maps", &["-m32"]);
    mmap_mprotect_munmap(&daemon, &program);
}

#[test]
fn int_0x80_from_a_64_bit_process_is_modelled() {
    let Some(daemon) = daemon() else {
        return;
    };
    let dir = TempDir::new("int80");
    let program = compile(&dir, "compat_maps", &["-DINT80"]);
    mmap_mprotect_munmap(&daemon, &program);
}

#[test]
fn the_aio_ring_appears_at_io_setup_and_goes_at_io_destroy() {
    let Some(daemon) = daemon() else {
        return;
    };
    let dir = TempDir::new("aio_ring");
    let program = compile(&dir, "aio_ring", &[]);
    let mut run = Stopped::spawn(&program, &[]);

    let ring = run.checkpoint("setup").hex("addr");
    let line = maps_line_at(run.pid, ring).expect("the aio ring in /proc");
    assert!(line.contains("/[aio]"), "{line}");
    daemon.assert_verified(run.pid, "setup");
    run.resume();

    run.checkpoint("destroyed");
    assert!(!maps_of(run.pid).contains("/[aio]"), "{}", maps_of(run.pid));
    daemon.assert_verified(run.pid, "destroyed");
    run.resume_and_finish();
}

#[test]
fn remap_file_pages_leaves_the_right_offsets() {
    let Some(daemon) = daemon() else {
        return;
    };
    let dir = TempDir::new("remap_pages");
    let program = compile(&dir, "remap_pages", &[]);
    let file = dir.path().join("pages");
    let mut run = Stopped::spawn(&program, &[file.to_str().unwrap()]);

    let map = run.checkpoint("mapped").hex("addr");
    daemon.assert_verified(run.pid, "mapped");
    run.resume();

    run.checkpoint("remapped");
    let second = maps_line_at(run.pid, map + 4096).expect("the remapped page is its own region");
    assert!(second.contains(" 00003000 "), "{second}");
    daemon.assert_verified(run.pid, "remapped");
    run.resume_and_finish();
}
