//! Connections no user can use to stall the daemon: 2,000 idle /metrics
//! connections and 2,000 idle query-socket connections (half from an
//! unprivileged uid, half from root), with the daemon under
//! LimitNOFILE=1024. Scrapes and queries still answer within 1 s, the caps
//! hold, and the daemon does not spin.
//!
//! Run as root: `cargo test -p memmon --test connections`.

mod support;

use std::{
    net::TcpStream,
    os::unix::net::UnixStream,
    path::Path,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use memmon::{client::Client, protocol::Request};
use support::{Daemon, metric, require_bpf, within};

const IDLE_HTTP: usize = 2000;
/// Per uid (nobody, then root).
const IDLE_SOCKET: usize = 1000;
const DAEMON_NOFILE: u64 = 1024;
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

fn set_nofile(pid: i32, limit: u64) {
    let rlim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: rlim is a valid rlimit and the old-limit pointer may be null.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &rlim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit({pid}): {}", std::io::Error::last_os_error());
}

/// `n` connections to `socket` made with `uid`'s credentials (the kernel
/// records the connecting thread's, so only this thread changes them).
fn connect_as(uid: u32, socket: &Path, n: usize) -> Vec<UnixStream> {
    let socket = socket.to_owned();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // SAFETY: the raw syscall changes only this thread's credentials,
        // which is the point; it has no memory-safety preconditions.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
        assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
        let conns: Vec<UnixStream> = (0..n)
            .map(|_| UnixStream::connect(&socket).expect("connect to the query socket"))
            .collect();
        tx.send(conns).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("connections made")
}

/// The daemon's user+system CPU time.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    // utime and stime are fields 14 and 15; `fields` starts at field 3.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

#[test]
fn idle_connection_floods_cannot_stall_scrapes_or_queries() {
    if !require_bpf() {
        return;
    }
    // This test holds ~4,000 sockets itself.
    set_nofile(0, 16 * 1024);
    let daemon = Daemon::start();
    let pid = daemon.pid();
    set_nofile(pid, DAEMON_NOFILE);
    let host = daemon
        .metrics_url()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    let http: Vec<TcpStream> = (0..IDLE_HTTP)
        .map(|_| TcpStream::connect(&host).expect("connect to /metrics"))
        .collect();
    let mut idle = connect_as(65534, daemon.socket(), IDLE_SOCKET);
    idle.extend(connect_as(0, daemon.socket(), IDLE_SOCKET));
    // Let the daemon accept (and close) the backlog.
    thread::sleep(Duration::from_millis(500));

    let cpu_before = cpu_time(pid);
    let window = Instant::now();
    let mut client = None;
    for round in 0..8 {
        let text = timed("a scrape", || daemon.scrape());
        let c = client.get_or_insert_with(|| {
            timed("connecting", || Client::connect(daemon.socket()).unwrap())
        });
        timed("a query", || {
            c.request(Request::Query {
                pid: pid as u32,
                events: 0,
                rss: false,
                origins: false,
                render: None,
            })
            .unwrap_or_else(|e| panic!("round {round}: query: {e}"))
        });
        // A fresh connection each round too: new peers get a slot.
        timed("a fresh connection's list", || {
            Client::connect(daemon.socket())
                .and_then(|mut c| c.request(Request::List))
                .unwrap_or_else(|e| panic!("round {round}: list: {e}"))
        });
        if round == 7 {
            for endpoint in ["metrics", "socket"] {
                let label = format!("{{endpoint=\"{endpoint}\"}}");
                let open = exported(&text, "memmon_connections_open", &label);
                let cap = if endpoint == "metrics" { 64.0 } else { 128.0 };
                assert!(
                    open <= cap,
                    "{open} {endpoint} connections open, over {cap}"
                );
                let shed = exported(&text, "memmon_connections_evicted_total", &label)
                    + exported(&text, "memmon_connections_refused_total", &label);
                assert!(shed > 0.0, "no {endpoint} connection was shed:\n{text}");
            }
        }
        thread::sleep(Duration::from_millis(250));
    }
    let elapsed = window.elapsed();
    let cpu = cpu_time(pid) - cpu_before;
    eprintln!("daemon CPU {cpu:?} over {elapsed:?} with the idle connections held");
    // A loop spinning on EMFILE or on idle sockets would take a whole core.
    assert!(
        cpu < elapsed / 4,
        "the daemon used {cpu:?} of CPU in {elapsed:?} while connections sat idle"
    );
    assert!(daemon.alive(), "the daemon died");
    drop((http, idle));
}

/// Runs `call`, failing the test if it took longer than [`ANSWER_WITHIN`].
fn timed<T>(what: &str, call: impl FnOnce() -> T) -> T {
    within(
        ANSWER_WITHIN,
        &format!("{what} under a connection flood"),
        call,
    )
    .0
}

/// A series the daemon must export.
fn exported(text: &str, name: &str, labels: &str) -> f64 {
    metric(text, name, labels).unwrap_or_else(|| panic!("{name}{labels} missing from:\n{text}"))
}
