//! Acceptance of the metrics: a real Prometheus (Debian's package) scrapes
//! the daemon with the shipped scrape config; promtool checks the
//! exposition and the config; the exposition carries no pid label and no
//! address; every metric the Grafana dashboard queries exists.
//!
//! Run as root: `cargo test -p memmon --test metrics`.

mod support;

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    Daemon, Stopped, TempDir, compiled, metric, output_text, require_bpf, shared_daemon,
};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// GET over plain HTTP/1.0 (loopback only); returns the body.
fn http_get(url: &str, accept: Option<&str>) -> String {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\n{accept}\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "GET {url}: {head}"
    );
    body.to_owned()
}

fn exposition(daemon: &Daemon) -> String {
    http_get(&daemon.metrics_url(), None)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; `cargo xtask setup` installs it)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = output_text(&out);
    (out.status.success(), text)
}

/// Metric names in an exposition: sampled, or declared by `# TYPE` (a
/// family with no series yet, e.g. no process with ASLR off).
fn metric_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(decl) => decl.split(' ').next(),
            None if !l.starts_with('#') && !l.is_empty() => l.split(['{', ' ']).next(),
            None => None,
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn exposition_passes_promtool_and_has_no_pid_or_address() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    // A busy system: a few processes mapping and unmapping while we scrape.
    let churn: Vec<Child> = (0..4)
        .map(|_| {
            Command::new("sh")
                .args([
                    "-c",
                    "for i in $(seq 200); do cat /proc/self/maps >/dev/null; done",
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    let text = exposition(daemon);
    for mut c in churn {
        let _ = c.wait();
    }
    let (ok, out) = promtool(&["check", "metrics"], Some(&text));
    assert!(ok, "promtool check metrics failed:\n{out}");
    let openmetrics = http_get(&daemon.metrics_url(), Some("application/openmetrics-text"));
    assert!(
        openmetrics.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF"
    );
    for line in text.lines().chain(openmetrics.lines()) {
        assert!(!line.contains("pid=\""), "a pid label: {line}");
        let hex_like = line.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
            (w.starts_with("0x") && w.len() > 2)
                || (w.len() >= 8
                    && w.chars().all(|c| c.is_ascii_hexdigit())
                    && w.chars().any(|c| c.is_ascii_alphabetic()))
        });
        assert!(!hex_like, "something like an address: {line}");
    }
    for required in [
        "memmon_mapped_bytes",
        "memmon_regions",
        "memmon_processes",
        "memmon_syscalls_total",
        "memmon_aslr_processes",
        "memmon_events_total",
        "memmon_events_lost_total",
        "memmon_events_undecodable_total",
        "memmon_lost_pids_full_total",
        "memmon_stack_capture_failures_total",
        "memmon_kernel_errors_total",
        "memmon_snapshots_installed_total",
        "memmon_snapshots_failed_total",
        "memmon_verify_rounds_total",
        "memmon_verify_processes_total",
        "memmon_tracked_processes",
        "memmon_build_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(metric_names(&text).contains(required), "{required} missing");
    }
    // The daemon's initial scan installed at least its own snapshot.
    let installed = text
        .lines()
        .find_map(|l| l.strip_prefix("memmon_snapshots_installed_total "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(installed.is_some_and(|n| n >= 1.0), "{installed:?}");
    assert!(
        text.contains(r#"memmon_aslr_processes{status="unknown"}"#),
        "every ASLR status has a series"
    );
}

/// A kernel error path counts: prctl(PR_SET_VMA_ANON_NAME) with a name
/// pointer that points nowhere fails, and the exit program's read of the
/// name fails too.
#[test]
fn kernel_errors_are_counted_by_kind() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let series = r#"{kind="read_vma_name",event="vma_name"}"#;
    let count = || metric(&exposition(daemon), "memmon_kernel_errors_total", series);
    let before = count().unwrap_or_else(|| panic!("no memmon_kernel_errors_total{series}"));
    for (kind, event) in [("ringbuf_full", "syscall"), ("read_call_site", "syscall")] {
        let other = format!("{{kind=\"{kind}\",event=\"{event}\"}}");
        assert!(
            metric(&exposition(daemon), "memmon_kernel_errors_total", &other).is_some(),
            "no memmon_kernel_errors_total{other}"
        );
    }
    const PR_SET_VMA: libc::c_int = 0x5356_4d41;
    // SAFETY: prctl only fails on the unmapped range and the bad name
    // pointer (nothing is written); the other arguments are integers.
    let ret = unsafe { libc::prctl(PR_SET_VMA, 0, 0x10000usize, 4096usize, 8usize) };
    assert_eq!(ret, -1, "prctl with a bad name pointer should fail");
    // /metrics is cached for a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = count().unwrap_or(before);
        if now > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "memmon_kernel_errors_total{series} stayed at {before}"
        );
        thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn per_pid_series_appear_only_when_opted_in() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("per-pid");
    let config = dir.path().join("memmon.toml");
    std::fs::write(&config, "per_pid_top_k = 3\n").unwrap();
    let daemon = Daemon::start_with(&["--config", config.to_str().unwrap()]);
    let text = exposition(&daemon);
    let with_pid = text.lines().filter(|l| l.contains("pid=\"")).count();
    assert_eq!(with_pid, 3, "exactly the top 3 get per-pid series:\n{text}");
    assert!(!exposition(Daemon::shared()).contains("pid=\""));
}

#[test]
fn every_metric_the_dashboard_queries_exists() {
    if !require_bpf() {
        return;
    }
    let dashboard =
        std::fs::read_to_string(Path::new(REPO).join("deploy/grafana/memmon-dashboard.json"))
            .unwrap();
    let _: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    // Families with no series are not exposed at all: make sure the ASLR
    // and W^X transition ones have a member, as a fleet would.
    let mut unrandomized = Command::new("setarch")
        .args(["-R", "sleep", "60"])
        .spawn()
        .expect("setarch");
    // Transitions are events: the daemon must be running before they happen.
    let daemon = Daemon::shared();
    let (_dir, jit) = compiled("jit_wx", &[]);
    let mut jit = Stopped::spawn(&jit, &[]);
    jit.checkpoint("done");
    let start = Instant::now();
    let mut exposed = metric_names(&exposition(daemon));
    while !(exposed.contains("memmon_aslr_disabled_info")
        && exposed.contains("memmon_wx_transitions_total"))
        && start.elapsed() < Duration::from_secs(20)
    {
        thread::sleep(Duration::from_millis(200));
        exposed = metric_names(&exposition(daemon));
    }
    let _ = unrandomized.kill();
    let _ = unrandomized.wait();
    let mut used = BTreeSet::new();
    for prefix in ["memmon_", "process_"] {
        for (i, _) in dashboard.match_indices(prefix) {
            let name: String = dashboard[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            used.insert(name);
        }
    }
    assert!(used.len() > 5, "the dashboard queries {used:?}");
    for name in &used {
        // Opt-in series are absent by default; they must still be documented.
        if name == "memmon_process_mapped_bytes" {
            continue;
        }
        assert!(
            exposed.contains(name),
            "the dashboard queries {name}, which memmon does not export"
        );
    }
}

#[test]
fn deploy_files_pass_their_checkers() {
    if !require_bpf() {
        return;
    }
    let (ok, out) = promtool(
        &["check", "config", &format!("{REPO}/deploy/prometheus.yml")],
        None,
    );
    assert!(ok, "promtool check config deploy/prometheus.yml:\n{out}");
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        // verify needs ExecStart to exist: point it at this build.
        let dir = TempDir::new("unit");
        let unit = std::fs::read_to_string(format!("{REPO}/deploy/memmon.service")).unwrap();
        let unit = unit.replace("/usr/local/bin/memmon", support::MEMMON);
        let path = dir.path().join("memmon.service");
        std::fs::write(&path, unit).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let text = output_text(&out);
        assert!(
            out.status.success() && text.trim().is_empty(),
            "systemd-analyze verify:\n{text}"
        );
    } else {
        eprintln!("note: systemd-analyze not installed; deploy/memmon.service not verified");
    }
}

#[test]
fn example_alert_rules_pass_promtool_and_name_catalogued_metrics() {
    let rules = format!("{REPO}/deploy/memmon-alerts.yml");
    let (ok, out) = promtool(&["check", "rules", &rules], None);
    assert!(ok, "promtool check rules deploy/memmon-alerts.yml:\n{out}");
    // The rule fires on a series that crosses its threshold, not on others.
    let (ok, out) = promtool(
        &[
            "test",
            "rules",
            &format!("{REPO}/deploy/memmon-alerts.test.yml"),
        ],
        None,
    );
    assert!(
        ok,
        "promtool test rules deploy/memmon-alerts.test.yml:\n{out}"
    );
    let text = std::fs::read_to_string(&rules).unwrap();
    let exprs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .collect();
    assert!(!exprs.is_empty(), "no alert expressions in {rules}");
    for expr in exprs {
        assert!(
            memmon::metrics::CATALOG
                .iter()
                .any(|d| expr.contains(d.name)),
            "alert expression names no exported metric: {expr}"
        );
    }
}

/// A Prometheus server on a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let dir = TempDir::new("prometheus");
        // The shipped config, pointed at this test's daemon, scraping fast.
        let shipped = std::fs::read_to_string(format!("{REPO}/deploy/prometheus.yml")).unwrap();
        assert!(
            shipped.contains("127.0.0.1:9464"),
            "the shipped config targets the default port"
        );
        let config = shipped
            .replace("127.0.0.1:9464", target)
            .replace("15s", "1s")
            .replace("scrape_timeout: 10s", "scrape_timeout: 1s");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package; `cargo xtask setup` installs it)");
        let url = format!("http://127.0.0.1:{port}");
        Self {
            child,
            url,
            _dir: dir,
        }
    }

    /// The first sample of an instant query, if any.
    fn query(&self, promql: &str) -> Option<f64> {
        let encoded: String = promql
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'_' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let url = format!("{}/api/v1/query?query={encoded}", self.url);
        let body = std::panic::catch_unwind(|| http_get(&url, None)).ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    fn wait_for(&self, promql: &str, pred: impl Fn(f64) -> bool, timeout: Duration) -> f64 {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < timeout {
            last = self.query(promql);
            if let Some(v) = last.filter(|v| pred(*v)) {
                return v;
            }
            thread::sleep(Duration::from_millis(500));
        }
        panic!("{promql} never satisfied the condition within {timeout:?}; last value {last:?}")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_memmon_and_sees_aslr_off() {
    let Some(daemon) = shared_daemon() else {
        return;
    };
    let target = daemon
        .metrics_url()
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let prometheus = Prometheus::start(&target);
    prometheus.wait_for(r#"up{job="memmon"}"#, |v| v == 1.0, Duration::from_secs(60));
    // A program whose ASLR is off: started under setarch -R.
    let mut unrandomized = Command::new("setarch")
        .args(["-R", "sleep", "120"])
        .spawn()
        .expect("setarch");
    let off = prometheus.wait_for(
        r#"memmon_aslr_processes{status="off"}"#,
        |v| v >= 1.0,
        Duration::from_secs(60),
    );
    let _ = unrandomized.kill();
    let _ = unrandomized.wait();
    eprintln!("Prometheus saw memmon up and {off} process(es) with ASLR off");
    let reason = prometheus.wait_for(
        r#"memmon_aslr_disabled_info{reason="addr_no_randomize"}"#,
        |v| v == 1.0,
        Duration::from_secs(30),
    );
    assert_eq!(reason, 1.0);
}
