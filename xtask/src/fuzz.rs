//! `cargo xtask fuzz`: the library's hostile-input property tests, run for
//! a time budget with many more cases than `cargo test`'s smoke pass.
//!
//! Each target is a set of proptest tests in memmon's unit tests. They run
//! in rounds, each with a fresh random seed and `PROPTEST_CASES` cases per
//! test (the first round measures the speed, later ones fill the target's
//! share of the budget, at most `--cases`), until the share is spent. Every
//! round runs under an address-space limit (`prlimit --as`), so a length
//! taken from hostile input that sizes an allocation aborts the round, and
//! under a watchdog, so a hang fails instead of stalling. A failure prints
//! proptest's minimal failing input; proptest also saves it under
//! `memmon/proptest-regressions/`, and `cargo test` replays it from then on.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::env::{cargo, describe, find_in_path, target_dir};
use crate::setup::setup;

struct Target {
    name: &'static str,
    what: &'static str,
    /// Full test paths in memmon's lib test binary.
    tests: &'static [&'static str],
}

const TARGETS: &[Target] = &[
    Target {
        name: "maps",
        what: "the /proc/PID/maps parser, and the seeder's model built from what it accepts",
        tests: &[
            "procmaps::tests::never_panics",
            "procmaps::tests::never_panics_on_near_misses",
            "procmaps::tests::display_then_parse_round_trips",
            "procmaps::tests::fuzz_mutated_maps_text",
            "procmaps::tests::fuzz_arbitrary_bytes",
        ],
    },
    Target {
        name: "elf",
        what: "the ELF reader",
        tests: &[
            "elf::tests::random_bytes_never_panic",
            "elf::tests::truncated_never_panics",
            "elf::tests::bit_flips_never_panic",
            "elf::tests::fuzz_lying_header_fields",
        ],
    },
    Target {
        name: "request",
        what: "the socket's frame reader and request decoder",
        tests: &[
            "protocol::tests::decode_request_never_panics",
            "protocol::tests::fuzz_valid_requests_decode_exactly",
            "protocol::tests::fuzz_field_mutated_requests",
            "protocol::tests::fuzz_byte_mutated_requests",
            "protocol::tests::fuzz_deeply_nested_and_huge_bodies",
            "protocol::tests::fuzz_read_frame",
        ],
    },
    Target {
        name: "event",
        what: "the ring-buffer record decoder, and the model fed what it decodes",
        tests: &[
            "events::decode::tests::never_panics_on_arbitrary_bytes",
            "events::decode::tests::fuzz_records_through_the_model",
            "events::decode::tests::fuzz_whole_records_decode",
        ],
    },
];

/// Cases per test in the first, measuring round of each target.
const FIRST_ROUND_CASES: u64 = 1000;
/// A round never gets fewer cases than this.
const MIN_ROUND_CASES: u64 = 200;

pub struct FuzzOptions {
    pub seconds: u64,
    pub max_cases: u64,
    pub targets: Vec<String>,
    pub memory_mib: u64,
}

struct Tally {
    name: &'static str,
    tests: usize,
    rounds: u32,
    cases_per_test: u64,
    elapsed: Duration,
}

pub fn fuzz(opts: &FuzzOptions) -> Result<()> {
    let chosen: Vec<&Target> = if opts.targets.is_empty() {
        TARGETS.iter().collect()
    } else {
        opts.targets
            .iter()
            .map(|name| {
                TARGETS.iter().find(|t| t.name == name).with_context(|| {
                    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
                    format!("no fuzz target {name:?}; there are {}", names.join(", "))
                })
            })
            .collect::<Result<_>>()?
    };
    println!("\n==> setup");
    setup()?;
    println!("\n==> building memmon's unit tests");
    let binary = build_lib_tests()?;
    check_tests_exist(&binary, &chosen)?;
    let limit = find_in_path("prlimit");
    if limit.is_none() {
        println!("note: no prlimit (util-linux): rounds run without an address-space limit");
    }

    let share = Duration::from_secs(opts.seconds) / chosen.len() as u32;
    let mut tallies = Vec::new();
    for target in &chosen {
        println!(
            "\n==> fuzz {}: {} ({} tests, {:.0} s)",
            target.name,
            target.what,
            target.tests.len(),
            share.as_secs_f64()
        );
        tallies.push(fuzz_target(target, &binary, share, opts, limit.as_deref())?);
    }

    println!("\n==> fuzz summary (every case passed)");
    println!(
        "{:<8} {:>5} {:>6} {:>14} {:>14} {:>8} {:>10}",
        "target", "tests", "rounds", "cases/test", "cases", "secs", "cases/s"
    );
    for t in &tallies {
        let total = t.cases_per_test * t.tests as u64;
        println!(
            "{:<8} {:>5} {:>6} {:>14} {:>14} {:>8.1} {:>10.0}",
            t.name,
            t.tests,
            t.rounds,
            t.cases_per_test,
            total,
            t.elapsed.as_secs_f64(),
            total as f64 / t.elapsed.as_secs_f64().max(1e-3)
        );
    }
    Ok(())
}

fn fuzz_target(
    target: &Target,
    binary: &Path,
    share: Duration,
    opts: &FuzzOptions,
    prlimit: Option<&Path>,
) -> Result<Tally> {
    let start = Instant::now();
    let mut tally = Tally {
        name: target.name,
        tests: target.tests.len(),
        rounds: 0,
        cases_per_test: 0,
        elapsed: Duration::ZERO,
    };
    // Seconds per case (all of the target's tests), from the rounds so far.
    let mut per_case: Option<f64> = None;
    loop {
        let left = share.saturating_sub(start.elapsed());
        if tally.rounds > 0 && left < share / 20 {
            break;
        }
        let cases = match per_case {
            None => FIRST_ROUND_CASES.min(opts.max_cases),
            Some(secs) => ((left.as_secs_f64() * 0.9 / secs) as u64)
                .clamp(MIN_ROUND_CASES, opts.max_cases.max(MIN_ROUND_CASES)),
        };
        // Generous: a round that takes this long is hung, not slow.
        let watchdog = per_case.map_or(Duration::from_secs(600), |secs| {
            Duration::from_secs_f64(secs * cases as f64 * 10.0 + 60.0)
        });
        let round_start = Instant::now();
        run_round(target, binary, cases, opts.memory_mib, prlimit, watchdog)?;
        let took = round_start.elapsed();
        tally.rounds += 1;
        tally.cases_per_test += cases;
        per_case = Some(took.as_secs_f64() / cases as f64);
        println!(
            "  round {}: {cases} cases x {} tests in {:.1} s",
            tally.rounds,
            target.tests.len(),
            took.as_secs_f64()
        );
    }
    tally.elapsed = start.elapsed();
    Ok(tally)
}

fn run_round(
    target: &Target,
    binary: &Path,
    cases: u64,
    memory_mib: u64,
    prlimit: Option<&Path>,
    watchdog: Duration,
) -> Result<()> {
    let log_path = target_dir().join(format!("fuzz-{}.log", target.name));
    let log = File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
    let mut cmd = match prlimit {
        Some(prlimit) => {
            let bytes = memory_mib << 20;
            let mut cmd = Command::new(prlimit);
            cmd.arg(format!("--as={bytes}:{bytes}"))
                .arg("--")
                .arg(binary);
            cmd
        }
        None => Command::new(binary),
    };
    cmd.args(["--exact", "--test-threads", "2"])
        .args(target.tests)
        .env("PROPTEST_CASES", cases.to_string())
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let what = describe(&cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{what}`"))?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > watchdog {
            let _ = child.kill();
            let _ = child.wait();
            print_log(&log_path);
            bail!(
                "fuzz {}: a round of {cases} cases ran {:.0} s: hung (killed)",
                target.name,
                watchdog.as_secs_f64()
            );
        }
        thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        print_log(&log_path);
        let hint = if status.code().is_none() {
            format!(
                " (killed by a signal: an allocation beyond the {memory_mib} MiB address-space \
                 limit aborts, as does a stack overflow)"
            )
        } else {
            String::new()
        };
        bail!(
            "fuzz {}: `{what}` failed: {status}{hint}; the minimal failing input is above",
            target.name
        );
    }
    Ok(())
}

fn print_log(path: &Path) {
    if let Ok(text) = std::fs::read_to_string(path) {
        println!("{text}");
    }
}

/// Builds memmon's lib test binary and returns its path, from cargo's
/// JSON messages (a line scan: xtask has no JSON dependency).
fn build_lib_tests() -> Result<PathBuf> {
    let mut cmd = cargo()?;
    cmd.args([
        "test",
        "-p",
        "memmon",
        "--lib",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ])
    .stderr(Stdio::inherit());
    let what = describe(&cmd);
    println!("+ {what}");
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{what}`"))?;
    if !out.status.success() {
        bail!("`{what}` failed: {}", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#) && l.contains(r#""test":true"#))
        .find_map(|l| {
            let rest = l.split(r#""executable":""#).nth(1)?;
            Some(PathBuf::from(&rest[..rest.find('"')?]))
        })
        .context("cargo built no lib test executable for memmon")
}

/// A renamed or deleted test would otherwise be skipped silently.
fn check_tests_exist(binary: &Path, targets: &[&Target]) -> Result<()> {
    let out = Command::new(binary)
        .args(["--list", "--format", "terse"])
        .output()
        .with_context(|| format!("could not list the tests of {}", binary.display()))?;
    let listed = String::from_utf8_lossy(&out.stdout);
    let names: std::collections::HashSet<&str> = listed
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .collect();
    for target in targets {
        for test in target.tests {
            if !names.contains(test) {
                bail!(
                    "fuzz target {}: no test {test} in memmon's unit tests",
                    target.name
                );
            }
        }
    }
    Ok(())
}
