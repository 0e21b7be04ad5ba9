use super::*;
use crate::model::compare;

fn own_pid() -> u32 {
    std::process::id()
}

#[test]
fn own_snapshot_agrees_with_fresh_maps() {
    let snap = snapshot(own_pid()).unwrap();
    let text = std::fs::read_to_string("/proc/self/maps").unwrap();
    let kernel = procmaps::parse_maps(&text).unwrap();
    // Other test threads may map or unmap between the two reads; retry a
    // few times before calling it a mismatch.
    let mut diffs = compare(&snap.space, &kernel);
    for _ in 0..5 {
        if diffs.is_empty() {
            break;
        }
        let snap = snapshot(own_pid()).unwrap();
        let kernel =
            procmaps::parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap()).unwrap();
        diffs = compare(&snap.space, &kernel);
    }
    let lines: Vec<String> = diffs.iter().map(ToString::to_string).collect();
    assert!(diffs.is_empty(), "{lines:#?}");

    assert_eq!(snap.pid, own_pid());
    assert!(snap.start_time_ticks > 0);
    assert!(!snap.comm.is_empty());
    // SAFETY: getuid has no preconditions and cannot fail.
    assert_eq!(snap.uid, unsafe { libc::getuid() });
    assert!(snap.exe.is_some());
    assert!(snap.space.start_stack.is_some());
    let brk = snap.space.brk.expect("a user process has a break");
    assert!(!brk.exact);
    assert!(brk.brk >= brk.start_brk);
    let heap = snap
        .space
        .regions()
        .find(|r| snap.space.display_path(r) == "[heap]");
    if let Some(heap) = heap {
        assert_eq!(brk.brk, heap.end);
    }
    let stack = snap
        .space
        .regions()
        .filter(|r| snap.space.display_path(r) == "[stack]")
        .count();
    assert_eq!(stack, 1);
}

#[test]
fn missing_pid_is_distinct() {
    // Above the default pid_max limit of 2^22.
    let err = snapshot(i32::MAX as u32).unwrap_err();
    assert!(err.is_no_such_pid(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("no such process: pid {}", i32::MAX)
    );
}

#[test]
fn kernel_thread_is_an_empty_snapshot() {
    // kthreadd is pid 2 when this runs in the host pid namespace.
    let Ok(snap) = snapshot(2) else { return };
    if snap.exe.is_none() && snap.comm == "kthreadd" {
        assert_eq!(snap.space.region_count(), 0);
        assert_eq!(snap.space.brk, None);
        assert_eq!(snap.space.start_stack, None);
    }
}

#[test]
fn lists_own_pid() {
    let pids = list_pids().unwrap();
    assert!(pids.contains(&own_pid()));
    assert!(pids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn io_errors_are_classified() {
    let enoent = io::Error::from_raw_os_error(libc::ENOENT);
    assert!(SeedError::from_io(5, "x".into(), enoent).is_no_such_pid());
    let esrch = io::Error::from_raw_os_error(libc::ESRCH);
    assert!(SeedError::from_io(5, "x".into(), esrch).is_no_such_pid());
    let eacces = io::Error::from_raw_os_error(libc::EACCES);
    assert!(matches!(
        SeedError::from_io(5, "x".into(), eacces),
        SeedError::PermissionDenied { .. }
    ));
}

#[test]
fn comm_with_spaces_and_parentheses() {
    // comm is the executable's name (first 15 bytes); stat wraps it in
    // parentheses, so a name containing ") (" must not confuse the parser.
    let dir = std::env::temp_dir().join(format!("memmon-seed-{}", own_pid()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("a) (b c");
    std::fs::copy("/bin/sleep", &exe).unwrap();
    let mut child = std::process::Command::new(&exe).arg("5").spawn().unwrap();
    let pid = child.id();
    // Wait until the child sleeps in the copied binary: mid-exec, stat can
    // show the new comm before start_stack is set.
    let sleeping = || {
        let stat = Process::new(pid as i32).unwrap().stat().unwrap();
        stat.comm == "a) (b c" && stat.state == 'S'
    };
    for _ in 0..500 {
        if sleeping() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let snap = snapshot(pid).unwrap();
    // A sleeping process is quiescent, so its map must agree exactly.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let diffs = compare(&snap.space, &procmaps::parse_maps(&maps).unwrap());
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(snap.comm, "a) (b c");
    assert_eq!(diffs, vec![]);
    assert_eq!(snap.exe.as_deref(), exe.to_str());
    assert!(
        snap.space
            .regions()
            .any(|r| snap.space.display_path(r) == exe.to_str().unwrap())
    );
}
