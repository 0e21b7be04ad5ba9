//! The shared syscall table and the two renderings, pinned byte for byte
//! (README documents both formats).

use memmon_common::tracepoints::MEMORY_SYSCALLS;

use super::{Event, EventBody, Meta, Syscall};

#[test]
fn syscalls_follow_the_shared_table() {
    assert_eq!(Syscall::ALL.len(), MEMORY_SYSCALLS.len());
    for (i, s) in Syscall::ALL.into_iter().enumerate() {
        assert_eq!(s as usize, i);
        assert_eq!(s.name(), MEMORY_SYSCALLS[i].name);
        assert_eq!(Syscall::from_nr(s.nr()), Some(s));
        assert_eq!(serde_json::to_value(s).unwrap(), s.name());
    }
    assert_eq!(Syscall::PkeyMprotect.name(), "pkey_mprotect");
    assert_eq!(
        Syscall::Mremap.traced().exit.to_string(),
        "syscalls/sys_exit_mremap"
    );
}

fn event(pid: u32, tid: u32, body: EventBody) -> Event {
    Event {
        meta: Meta {
            pid,
            tid,
            ts_ns: 7,
            comm: "foo".into(),
            call_site: 0,
            stack_id: None,
        },
        body,
    }
}

/// mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0).
pub(super) fn anon_mmap(len: u64, ret: i64) -> EventBody {
    EventBody::Mmap {
        addr: 0,
        len,
        prot: 3,
        flags: 0x22,
        fd: -1,
        offset: 0,
        ret,
        file: None,
    }
}

/// munmap of an unaligned byte: EINVAL.
fn bad_munmap() -> EventBody {
    EventBody::Munmap {
        addr: 0x1000,
        len: 1,
        ret: -22,
    }
}

/// mremap of one page at 0x1000 to two.
fn grow(flags: u64, new_addr: u64, ret: i64) -> EventBody {
    EventBody::Mremap {
        old_addr: 0x1000,
        old_len: 4096,
        new_len: 8192,
        flags,
        new_addr,
        ret,
    }
}

/// One event of every kind, with the line and the JSON object it renders to.
fn every_kind() -> Vec<(Event, &'static str, &'static str)> {
    vec![
        (
            event(1234, 1235, anon_mmap(8192, 0x7f15_a082_3000)),
            "mmap  pid=1234 tid=1235 comm=foo addr=0x0 len=8192 prot=RW- flags=PRIVATE|ANONYMOUS fd=-1 off=0 -> 0x7f15a0823000",
            r#"{"kind":"mmap","pid":1234,"tid":1235,"comm":"foo","ts_ns":7,"addr":"0x0","len":8192,"prot":3,"prot_str":"RW-","flags":34,"flags_str":"PRIVATE|ANONYMOUS","fd":-1,"offset":0,"ret":"0x7f15a0823000"}"#,
        ),
        (
            event(
                1234,
                1234,
                EventBody::Mmap {
                    addr: 0x7f00_0000_0000,
                    len: 4096,
                    prot: 5,
                    flags: 0x13,
                    fd: 3,
                    offset: 8192,
                    ret: -12,
                    file: None,
                },
            ),
            "mmap  pid=1234 tid=1234 comm=foo addr=0x7f0000000000 len=4096 prot=R-X flags=SHARED_VALIDATE|FIXED fd=3 off=8192 -> -12 (ENOMEM)",
            r#"{"kind":"mmap","pid":1234,"tid":1234,"comm":"foo","ts_ns":7,"addr":"0x7f0000000000","len":4096,"prot":5,"prot_str":"R-X","flags":19,"flags_str":"SHARED_VALIDATE|FIXED","fd":3,"offset":8192,"ret":-12,"errno":"ENOMEM"}"#,
        ),
        (
            event(1234, 1234, bad_munmap()),
            "munmap pid=1234 tid=1234 comm=foo addr=0x1000 len=1 -> -22 (EINVAL)",
            r#"{"kind":"munmap","pid":1234,"tid":1234,"comm":"foo","ts_ns":7,"addr":"0x1000","len":1,"ret":-22,"errno":"EINVAL"}"#,
        ),
        (
            event(
                1234,
                1235,
                EventBody::Munmap {
                    addr: 0x7f15_a082_3000,
                    len: 8192,
                    ret: 0,
                },
            ),
            "munmap pid=1234 tid=1235 comm=foo addr=0x7f15a0823000 len=8192 -> 0",
            r#"{"kind":"munmap","pid":1234,"tid":1235,"comm":"foo","ts_ns":7,"addr":"0x7f15a0823000","len":8192,"ret":0}"#,
        ),
        (
            event(
                1234,
                1234,
                EventBody::Brk {
                    addr: 0,
                    ret: 0x5555_5555_9000,
                },
            ),
            "brk   pid=1234 tid=1234 comm=foo addr=0x0 -> 0x555555559000",
            r#"{"kind":"brk","pid":1234,"tid":1234,"comm":"foo","ts_ns":7,"addr":"0x0","ret":"0x555555559000"}"#,
        ),
        (
            event(
                1234,
                1234,
                EventBody::Mprotect {
                    addr: 0x1000,
                    len: 4096,
                    prot: 0,
                    pkey: None,
                    ret: 0,
                },
            ),
            "mprotect pid=1234 tid=1234 comm=foo addr=0x1000 len=4096 prot=--- -> 0",
            r#"{"kind":"mprotect","pid":1234,"tid":1234,"comm":"foo","ts_ns":7,"addr":"0x1000","len":4096,"prot":0,"prot_str":"---","ret":0}"#,
        ),
        (
            event(
                1234,
                1235,
                EventBody::Mprotect {
                    addr: 0x1000,
                    len: 4096,
                    prot: 7,
                    pkey: Some(3),
                    ret: -1,
                },
            ),
            "pkey_mprotect pid=1234 tid=1235 comm=foo addr=0x1000 len=4096 prot=RWX pkey=3 -> -1 (EPERM)",
            r#"{"kind":"pkey_mprotect","pid":1234,"tid":1235,"comm":"foo","ts_ns":7,"addr":"0x1000","len":4096,"prot":7,"prot_str":"RWX","pkey":3,"ret":-1,"errno":"EPERM"}"#,
        ),
        (
            event(1234, 1234, grow(1, 0, 0x2000)),
            "mremap pid=1234 tid=1234 comm=foo old_addr=0x1000 old_len=4096 new_len=8192 flags=MAYMOVE new_addr=0x0 -> 0x2000",
            r#"{"kind":"mremap","pid":1234,"tid":1234,"comm":"foo","ts_ns":7,"old_addr":"0x1000","old_len":4096,"new_len":8192,"flags":1,"flags_str":"MAYMOVE","new_addr":"0x0","ret":"0x2000"}"#,
        ),
        (
            event(1234, 1234, grow(7, 0x9000, -4095)),
            "mremap pid=1234 tid=1234 comm=foo old_addr=0x1000 old_len=4096 new_len=8192 flags=MAYMOVE|FIXED|DONTUNMAP new_addr=0x9000 -> -4095",
            r#"{"kind":"mremap","pid":1234,"tid":1234,"comm":"foo","ts_ns":7,"old_addr":"0x1000","old_len":4096,"new_len":8192,"flags":7,"flags_str":"MAYMOVE|FIXED|DONTUNMAP","new_addr":"0x9000","ret":-4095}"#,
        ),
        (
            event(
                1234,
                1235,
                EventBody::Shmat {
                    shmid: 5,
                    addr: 0,
                    flags: 0o10000,
                    ret: 0x7f00_0000_0000,
                },
            ),
            "shmat pid=1234 tid=1235 comm=foo shmid=5 addr=0x0 flags=0x1000 -> 0x7f0000000000",
            r#"{"kind":"shmat","pid":1234,"tid":1235,"comm":"foo","ts_ns":7,"shmid":5,"addr":"0x0","flags":4096,"ret":"0x7f0000000000"}"#,
        ),
        (
            event(
                1234,
                1234,
                EventBody::Shmat {
                    shmid: -1,
                    addr: 0,
                    flags: 0,
                    ret: -22,
                },
            ),
            "shmat pid=1234 tid=1234 comm=foo shmid=-1 addr=0x0 flags=0x0 -> -22 (EINVAL)",
            r#"{"kind":"shmat","pid":1234,"tid":1234,"comm":"foo","ts_ns":7,"shmid":-1,"addr":"0x0","flags":0,"ret":-22,"errno":"EINVAL"}"#,
        ),
        (
            event(
                1234,
                1234,
                EventBody::Shmdt {
                    addr: 0x7f00_0000_0000,
                    ret: 0,
                },
            ),
            "shmdt pid=1234 tid=1234 comm=foo addr=0x7f0000000000 -> 0",
            r#"{"kind":"shmdt","pid":1234,"tid":1234,"comm":"foo","ts_ns":7,"addr":"0x7f0000000000","ret":0}"#,
        ),
        (
            event(
                1234,
                1234,
                EventBody::IoSetup {
                    nr_events: 64,
                    ring: 0x7f00_0000_0000,
                    ret: 0,
                },
            ),
            "io_setup pid=1234 tid=1234 comm=foo addr=0x7f0000000000 nr_events=64 -> 0",
            r#"{"kind":"io_setup","pid":1234,"tid":1234,"comm":"foo","ts_ns":7,"addr":"0x7f0000000000","nr_events":64,"ret":0}"#,
        ),
        (
            event(
                1234,
                1234,
                EventBody::IoDestroy {
                    ring: 0x7f00_0000_0000,
                    ret: 0,
                },
            ),
            "io_destroy pid=1234 tid=1234 comm=foo addr=0x7f0000000000 -> 0",
            r#"{"kind":"io_destroy","pid":1234,"tid":1234,"comm":"foo","ts_ns":7,"addr":"0x7f0000000000","ret":0}"#,
        ),
        (
            event(
                1234,
                1234,
                EventBody::RemapFilePages {
                    start: 0x7f00_0000_1000,
                    size: 4096,
                    pgoff: 3,
                    flags: 0,
                    ret: 0,
                },
            ),
            "remap_file_pages pid=1234 tid=1234 comm=foo addr=0x7f0000001000 len=4096 flags=0x0 pgoff=3 -> 0",
            r#"{"kind":"remap_file_pages","pid":1234,"tid":1234,"comm":"foo","ts_ns":7,"addr":"0x7f0000001000","len":4096,"flags":0,"pgoff":3,"ret":0}"#,
        ),
        (
            event(
                1234,
                1235,
                EventBody::VmaName {
                    addr: 0x1000,
                    len: 4096,
                    name: Some("heap \"x\"".into()),
                    ret: 0,
                },
            ),
            r#"vma_name pid=1234 tid=1235 comm=foo addr=0x1000 len=4096 name="heap \"x\"" -> 0"#,
            r#"{"kind":"vma_name","pid":1234,"tid":1235,"comm":"foo","ts_ns":7,"addr":"0x1000","len":4096,"name":"heap \"x\"","ret":0}"#,
        ),
        (
            event(
                1234,
                1234,
                EventBody::VmaName {
                    addr: 0x1000,
                    len: 4096,
                    name: None,
                    ret: -22,
                },
            ),
            "vma_name pid=1234 tid=1234 comm=foo addr=0x1000 len=4096 name=NULL -> -22 (EINVAL)",
            r#"{"kind":"vma_name","pid":1234,"tid":1234,"comm":"foo","ts_ns":7,"addr":"0x1000","len":4096,"name":null,"ret":-22,"errno":"EINVAL"}"#,
        ),
        (
            event(
                1234,
                1234,
                EventBody::Exec {
                    filename: "/bin/true".into(),
                    old_tid: 1235,
                },
            ),
            r#"exec  pid=1234 tid=1234 comm=foo filename="/bin/true" old_tid=1235"#,
            r#"{"kind":"exec","pid":1234,"tid":1234,"comm":"foo","ts_ns":7,"filename":"/bin/true","old_tid":1235}"#,
        ),
        (
            event(
                1234,
                1235,
                EventBody::Fork {
                    child_pid: 1234,
                    child_tid: 1240,
                    clone_flags: 0x3d0f00,
                },
            ),
            "fork  pid=1234 tid=1235 comm=foo child_pid=1234 child_tid=1240 thread clone_flags=0x3d0f00",
            r#"{"kind":"fork","pid":1234,"tid":1235,"comm":"foo","ts_ns":7,"child_pid":1234,"child_tid":1240,"clone_flags":4001536,"thread":true}"#,
        ),
        (
            event(
                1234,
                1234,
                EventBody::Fork {
                    child_pid: 1300,
                    child_tid: 1300,
                    clone_flags: 0x1200011,
                },
            ),
            "fork  pid=1234 tid=1234 comm=foo child_pid=1300 child_tid=1300 process clone_flags=0x1200011",
            r#"{"kind":"fork","pid":1234,"tid":1234,"comm":"foo","ts_ns":7,"child_pid":1300,"child_tid":1300,"clone_flags":18874385,"thread":false}"#,
        ),
        (
            event(1234, 1234, EventBody::Exit { group_dead: true }),
            "exit  pid=1234 tid=1234 comm=foo group_dead=true",
            r#"{"kind":"exit","pid":1234,"tid":1234,"comm":"foo","ts_ns":7,"group_dead":true}"#,
        ),
        (
            event(1234, 1235, EventBody::Exit { group_dead: false }),
            "exit  pid=1234 tid=1235 comm=foo group_dead=false",
            r#"{"kind":"exit","pid":1234,"tid":1235,"comm":"foo","ts_ns":7,"group_dead":false}"#,
        ),
    ]
}

#[test]
fn every_kind_renders_as_documented() {
    let cases = every_kind();
    let mut kinds: Vec<&str> = Vec::new();
    for (e, line, json) in &cases {
        assert_eq!(e.to_line(), *line);
        assert_eq!(e.to_json().to_string(), *json);
        let mut written = Vec::new();
        e.write_json(&mut written).unwrap();
        assert_eq!(String::from_utf8(written).unwrap(), *json);
        assert!(
            line.starts_with(&format!("{} pid=", e.kind()))
                || line.starts_with(&format!("{:<5} pid=", e.kind()))
        );
        kinds.push(e.kind());
    }
    kinds.dedup();
    assert_eq!(
        kinds,
        Event::KINDS,
        "one case of every kind, in table order"
    );
}

#[test]
fn mmap_line_matches_the_documented_form() {
    let e = event(1234, 1234, anon_mmap(8192, 0x7f15_a082_3000));
    assert_eq!(
        e.to_line(),
        "mmap  pid=1234 tid=1234 comm=foo addr=0x0 len=8192 prot=RW- flags=PRIVATE|ANONYMOUS fd=-1 off=0 -> 0x7f15a0823000"
    );
    let j = e.to_json();
    assert_eq!(j["kind"], "mmap");
    assert_eq!(j["addr"], "0x0");
    assert_eq!(j["len"], 8192);
    assert_eq!(j["fd"], -1);
    assert_eq!(j["ret"], "0x7f15a0823000");
}

#[test]
fn errors_print_errno_names() {
    let e = event(1234, 1234, bad_munmap());
    assert!(e.to_line().ends_with("-> -22 (EINVAL)"), "{}", e.to_line());
    assert_eq!(e.to_json()["ret"], -22);
    assert_eq!(e.to_json()["errno"], "EINVAL");
    let failed_mmap = event(1234, 1234, anon_mmap(1 << 50, -12));
    assert_eq!(failed_mmap.to_json()["ret"], -12);
}

#[test]
fn fork_says_thread_or_process() {
    let thread = event(
        1234,
        1234,
        EventBody::Fork {
            child_pid: 1234,
            child_tid: 1240,
            clone_flags: 0x10000,
        },
    );
    assert!(thread.to_line().contains("thread"));
    assert_eq!(thread.to_json()["thread"], true);
    let process = event(
        1234,
        1234,
        EventBody::Fork {
            child_pid: 1300,
            child_tid: 1300,
            clone_flags: 0,
        },
    );
    assert_eq!(process.to_json()["child_pid"], 1300);
    assert_eq!(process.to_json()["thread"], false);
}
