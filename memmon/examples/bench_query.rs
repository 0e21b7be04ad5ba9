//! Latency of the daemon's query socket, seen from a client.
//!
//! ```sh
//! bench_query --socket /run/memmon/memmon.sock query PID 200
//! bench_query --socket /run/memmon/memmon.sock list 50
//! ```
//!
//! `query` issues N `Query` requests for PID through the library's
//! [`Client`]; `list` issues N `list` requests (what `memmon ps` sends).
//! One warm-up request is made first and not counted. The last line is
//! machine-readable (`cargo xtask bench-query` parses it):
//!
//! `result mode=query n=200 items=10012 p50_us=.. p99_us=.. max_us=.. first_us=..`
//!
//! where `items` is the region count (query) or process count (list).

use std::{
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use memmon::{
    client::{Client, DEFAULT_SOCKET},
    protocol::{MAX_REPLY_BYTES, PROTOCOL_VERSION, Reply, Request, read_frame, write_frame},
};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Measure memmon's query latency")]
struct Args {
    /// The daemon's socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Open a new connection for every request (as each CLI run does).
    #[arg(long)]
    reconnect: bool,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// N `Query` requests for one pid.
    Query {
        pid: u32,
        #[arg(default_value_t = 200)]
        count: usize,
        /// Events to ask for with each query.
        #[arg(long, default_value_t = 0)]
        events: usize,
    },
    /// N `list` requests (the request behind `memmon ps`).
    List {
        #[arg(default_value_t = 50)]
        count: usize,
    },
    /// N Prometheus scrapes of `url` (http://HOST:PORT/metrics); `items`
    /// is the exposition's size in bytes.
    Scrape {
        url: String,
        #[arg(default_value_t = 50)]
        count: usize,
    },
}

/// One GET over HTTP/1.0 on loopback; returns the body's length.
fn scrape_once(url: &str) -> anyhow::Result<usize> {
    use std::io::{Read as _, Write as _};
    let rest = url
        .strip_prefix("http://")
        .context("scrape needs an http:// URL")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream =
        std::net::TcpStream::connect(host).with_context(|| format!("connect to {host}"))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP header end")?;
    if !response.starts_with(b"HTTP/1.1 200") && !response.starts_with(b"HTTP/1.0 200") {
        bail!(
            "scrape answered {}",
            String::from_utf8_lossy(&response[..split])
        );
    }
    Ok(response.len() - split - 4)
}

/// A connection that is either kept or reopened per request.
struct Conn<T> {
    socket: PathBuf,
    reconnect: bool,
    open: fn(&Path) -> anyhow::Result<T>,
    kept: Option<T>,
}

impl<T> Conn<T> {
    fn get(&mut self) -> anyhow::Result<&mut T> {
        if self.reconnect || self.kept.is_none() {
            self.kept = Some((self.open)(&self.socket)?);
        }
        Ok(self.kept.as_mut().unwrap())
    }
}

fn query_once(conn: &mut Conn<Client>, pid: u32, events: usize) -> anyhow::Result<usize> {
    match conn.get()?.request(Request::Query {
        pid,
        events,
        rss: false,
        origins: false,
        render: None,
    })? {
        Reply::Layout(layout) => Ok(layout.regions.len()),
        other => bail!("unexpected reply: {other:?}"),
    }
}

/// `list` over a raw frame: the request is spelled out in JSON so that
/// this example only depends on the protocol's framing.
fn list_once(conn: &mut Conn<UnixStream>) -> anyhow::Result<usize> {
    let stream = conn.get()?;
    write_frame(
        stream,
        &json!({"version": PROTOCOL_VERSION, "request": {"type": "list"}}),
    )?;
    let reply: Value = read_frame(stream, MAX_REPLY_BYTES)?;
    if let Some(err) = reply.get("error") {
        bail!("the daemon refused `list`: {err}");
    }
    reply["ok"]["processes"]
        .as_array()
        .map(Vec::len)
        .with_context(|| format!("not a process list: {:.200}", reply.to_string()))
}

struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// Nearest-rank percentiles.
fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len();
    let rank = |p: usize| samples[(n * p).div_ceil(100).clamp(1, n) - 1];
    Stats {
        n,
        p50: rank(50),
        p99: rank(99),
        max: samples[n - 1],
    }
}

fn measure(
    count: usize,
    mut once: impl FnMut() -> anyhow::Result<usize>,
) -> anyhow::Result<(Stats, usize, Duration)> {
    if count == 0 {
        bail!("count must be at least 1");
    }
    let started = Instant::now();
    let items = once().context("warm-up request")?;
    let first = started.elapsed();
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let t = Instant::now();
        once().with_context(|| format!("request {}", i + 1))?;
        samples.push(t.elapsed());
    }
    Ok((stats(samples), items, first))
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.mode {
        Mode::Query { pid, count, events } => {
            let mut conn = Conn {
                socket: args.socket.clone(),
                reconnect: args.reconnect,
                open: |p| Ok(Client::connect(p)?),
                kept: None,
            };
            measure(count, || query_once(&mut conn, pid, events)).map(|r| ("query", r))
        }
        Mode::List { count } => {
            let mut conn = Conn {
                socket: args.socket.clone(),
                reconnect: args.reconnect,
                open: |p| {
                    UnixStream::connect(p).with_context(|| format!("connect to {}", p.display()))
                },
                kept: None,
            };
            measure(count, || list_once(&mut conn)).map(|r| ("list", r))
        }
        Mode::Scrape { url, count } => measure(count, || scrape_once(&url)).map(|r| ("scrape", r)),
    };
    match result {
        Ok((mode, (s, items, first))) => {
            let what = match mode {
                "query" => "regions",
                "scrape" => "bytes",
                _ => "processes",
            };
            println!(
                "{mode}: {} requests, {items} {what}: p50 {}  p99 {}  max {}  (first {})",
                s.n,
                ms(s.p50),
                ms(s.p99),
                ms(s.max),
                ms(first)
            );
            println!(
                "result mode={mode} n={} items={items} p50_us={} p99_us={} max_us={} first_us={}",
                s.n,
                s.p50.as_micros(),
                s.p99.as_micros(),
                s.max.as_micros(),
                first.as_micros()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bench_query: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = stats((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        let one = stats(vec![Duration::from_millis(7)]);
        assert_eq!((one.p50, one.p99, one.max), (one.max, one.max, one.max));
    }
}
