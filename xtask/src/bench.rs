//! `cargo xtask bench-query`: query latency at scale, against the release
//! daemon. One process holds 10,000 regions (memmon/tests/fixtures/
//! many_regions.c), 1,000 idle `sleep` processes stand in for a busy
//! machine, and memmon/examples/bench_query.rs times `query` of the big
//! process and `list` (what `memmon ps` sends) over the daemon's socket.
//! Everything it starts is stopped again, on errors too.

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench_support::{
    IDLE_PROCESSES, Reaper, TempDir, start_daemon, state_of, wait_for_line,
};
use crate::env::{cargo, is_root, output, repo_root, run, target_dir};
use crate::setup::setup;

const REGIONS: u32 = 10_000;
const QUERY_REQUESTS: u32 = 200;
const LIST_REQUESTS: u32 = 50;
/// The whole run after the build: start, seed, measure, clean up.
const BUDGET: Duration = Duration::from_secs(110);

fn check_budget(started: Instant, what: &str) -> Result<()> {
    if started.elapsed() > BUDGET {
        bail!("out of time ({:?} budget) while {what}", BUDGET);
    }
    Ok(())
}

/// `result mode=.. n=.. items=.. p50_us=.. p99_us=.. max_us=..` from bench_query.
struct Measured {
    items: u64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
}

fn parse_result(text: &str) -> Result<Measured> {
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("result "))
        .with_context(|| format!("no result line in: {text}"))?;
    let field = |key: &str| -> Result<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {key} in {line:?}"))
    };
    Ok(Measured {
        items: field("items")?,
        p50_us: field("p50_us")?,
        p99_us: field("p99_us")?,
        max_us: field("max_us")?,
    })
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

pub fn bench_query() -> Result<()> {
    if !is_root()? {
        bail!("bench-query loads the eBPF programs: run it as root");
    }
    setup()?;
    run(cargo()?.args(["build", "--release", "-p", "memmon", "--examples", "--bins"]))?;
    let release = target_dir().join("release");
    let memmon = release.join("memmon");
    let bench = release.join("examples").join("bench_query");

    let started = Instant::now();
    let scratch = TempDir::create("bench")?;
    let fixture = scratch.path().join("many_regions");
    let source = repo_root().join("memmon/tests/fixtures/many_regions.c");
    run(Command::new("cc")
        .args(["-O1", "-o"])
        .arg(&fixture)
        .arg(&source))?;

    let mut reaper = Reaper::default();

    // The big process, stopped once its regions are in place.
    let big = reaper.add(
        Command::new(&fixture)
            .arg(REGIONS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("spawning many_regions")?,
    );
    let big_pid = big.id();
    let stdout = big.stdout.take().unwrap();
    wait_for_line(stdout, "ready pid=", Duration::from_secs(30))?;
    while state_of(big_pid) != Some('T') {
        check_budget(started, "waiting for many_regions to stop")?;
        thread::sleep(Duration::from_millis(10));
    }

    // A busy machine: 1,000 idle processes.
    println!("spawning {IDLE_PROCESSES} idle processes");
    reaper.spawn_idle_processes()?;

    // The daemon seeds all of them from /proc before it says it is ready.
    let socket = scratch.path().join("memmon.sock");
    let left = BUDGET.saturating_sub(started.elapsed());
    let daemon = start_daemon(&mut reaper, &memmon, &socket, left)?;
    let ready = &daemon.ready;
    println!(
        "{ready} ({:.1} s after the fixtures)",
        started.elapsed().as_secs_f64()
    );

    // The model of the big process must be complete before timing it.
    loop {
        let ok = Command::new(&memmon)
            .args(["verify", &big_pid.to_string(), "--socket"])
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success();
        if ok {
            break;
        }
        check_budget(
            started,
            "waiting for the model of many_regions to agree with /proc",
        )?;
        thread::sleep(Duration::from_millis(200));
    }

    let measure = |args: &[String]| -> Result<Measured> {
        let mut cmd = Command::new(&bench);
        cmd.arg("--socket").arg(&socket).args(args);
        let text = output(&mut cmd)?;
        println!("{text}");
        parse_result(&text)
    };
    // Each is reported even when the other fails (an older daemon has no `list`).
    let query = measure(&[
        "query".into(),
        big_pid.to_string(),
        QUERY_REQUESTS.to_string(),
    ]);
    let list = measure(&["list".into(), LIST_REQUESTS.to_string()]);
    let metrics_url = daemon.metrics_url()?;
    let scrape = measure(&["scrape".into(), metrics_url, LIST_REQUESTS.to_string()]);

    println!();
    println!(
        "{:<30} {:>5} {:>10} {:>10} {:>10}",
        "request", "n", "p50", "p99", "max"
    );
    let rows = [
        ("query", QUERY_REQUESTS, "regions", &query),
        ("ps (list)", LIST_REQUESTS, "processes", &list),
        ("scrape /metrics", LIST_REQUESTS, "bytes", &scrape),
    ];
    for (name, n, items, measured) in rows {
        match measured {
            Ok(m) => println!(
                "{:<30} {n:>5} {:>10} {:>10} {:>10}",
                format!("{name} @ {} {items}", m.items),
                ms(m.p50_us),
                ms(m.p99_us),
                ms(m.max_us)
            ),
            Err(_) => println!("{name:<30} {n:>5} {:>10}", "failed"),
        }
    }
    let query = query?;
    list?;
    scrape?;
    if query.items < u64::from(REGIONS) {
        bail!(
            "the big process showed {} regions, fewer than {REGIONS}",
            query.items
        );
    }
    check_budget(started, "measuring")?;
    drop(reaper);
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_result;

    #[test]
    fn result_lines_are_parsed() {
        let m = parse_result(
            "query: ...\nresult mode=query n=200 items=10012 p50_us=1500 p99_us=4000 max_us=9000 first_us=20000\n",
        )
        .unwrap();
        assert_eq!(
            (m.items, m.p50_us, m.p99_us, m.max_us),
            (10012, 1500, 4000, 9000)
        );
        assert!(parse_result("nothing here").is_err());
    }
}
