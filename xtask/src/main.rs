//! `cargo xtask`: build, run and test memmon with its eBPF prerequisites in place.

mod apt;
mod bench_overhead;
mod bench_query;
mod bench_support;
mod build;
mod env;
mod fuzz;
mod install;
mod linker;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "memmon developer tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install missing build prerequisites (rust-src, bpf-linker, apt packages).
    Setup,
    /// Build memmon (including its eBPF object).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build memmon and run it as root; arguments after `--` go to memmon.
    Run {
        #[arg(long)]
        release: bool,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run the workspace tests; arguments after `--` go to `cargo test`.
    Test {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Check formatting and run clippy with warnings denied.
    Lint,
    /// `query` (JSON, table) vs `pmap` at 100, 1,000 and 20,000 regions, `ps`,
    /// scrapes, and drain gaps under query load (release build, root).
    BenchQuery,
    /// Tracing overhead vs bpftrace, event rate without loss, daemon CPU/RSS, initial scan (root).
    Bench {
        /// mmap+munmap (and brk) pairs per loop run.
        #[arg(long, default_value_t = 50_000)]
        iters: u64,
        /// Interleaved rounds of untraced / bpftrace (twice) / memmon (call
        /// sites off, on, and with stacks).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Use this memmon binary instead of building the release one (a
        /// debug daemon's CPU per event is not the release one's; the
        /// in-kernel numbers do not depend on it).
        #[arg(long, value_name = "PATH")]
        memmon: Option<std::path::PathBuf>,
    },
    /// Run the hostile-input property tests (maps parser, ELF reader,
    /// request and event decoders) for a time budget with many cases.
    Fuzz {
        /// Total time budget, shared equally by the targets.
        #[arg(long, default_value_t = 120)]
        seconds: u64,
        /// Most cases per test in one round (PROPTEST_CASES).
        #[arg(long, default_value_t = 50_000)]
        cases: u64,
        /// Only this target (maps, elf, request, event); repeatable.
        #[arg(long = "target", value_name = "NAME")]
        targets: Vec<String>,
        /// Address-space limit of each round, in MiB.
        #[arg(long, default_value_t = 1024)]
        memory_mib: u64,
    },
    /// Build a release memmon and install it with its systemd unit and config.
    Install {
        /// The binary goes to PREFIX/bin (the unit's ExecStart follows).
        #[arg(long, default_value = "/usr/local")]
        prefix: std::path::PathBuf,
        /// Stage everything under DIR instead of / (packaging, tests).
        #[arg(long, value_name = "DIR")]
        destdir: Option<std::path::PathBuf>,
        /// Replace an existing /etc/memmon/memmon.toml.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Setup => setup::setup(),
        Cmd::Build { release } => build::build(release).map(|_| ()),
        Cmd::Run { release, args } => build::run(release, &args),
        Cmd::Test { args } => test::test(&args),
        Cmd::Lint => test::lint(),
        Cmd::BenchQuery => bench_query::bench_query(),
        Cmd::Bench {
            iters,
            rounds,
            memmon,
        } => bench_overhead::bench(iters, rounds, memmon),
        Cmd::Fuzz {
            seconds,
            cases,
            targets,
            memory_mib,
        } => fuzz::fuzz(&fuzz::FuzzOptions {
            seconds,
            max_cases: cases,
            targets,
            memory_mib,
        }),
        Cmd::Install {
            prefix,
            destdir,
            force,
        } => install::install(&prefix, destdir.as_deref(), force),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            // Pass a failed child's own exit code through so CI sees it.
            let code = err.downcast_ref::<env::Failed>().map_or(1, |f| f.code);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}
