//! The `memmon` binary: the command-line interface over the library, one
//! file per subcommand. Human rendering (tables, sizes) lives here too,
//! except the layout's table and its columns, which the daemon renders
//! for `query` (library `report::text` and `report::columns`).

mod aslr;
mod daemon;
mod diff;
mod map;
mod origins;
mod ps;
mod query;
mod rss;
mod top;
mod top_ui;
mod trace;
mod verify;
mod wx;

/// The library's renderings, by the names the subcommands use.
mod render {
    pub use memmon::report::{
        human_size,
        text::{json_name, render_text},
    };
}
mod table {
    pub use memmon::report::columns::{Columns, Style};
}

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// memmon: a live memory-map monitor for Linux.
///
/// Kernel programs trace every mmap, munmap, brk, mprotect, mremap and shm
/// call, plus exec, fork and exit, and a daemon keeps a model of every
/// process's address space that agrees with /proc/PID/maps.
#[derive(Debug, Parser)]
#[command(name = "memmon", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Daemon(daemon::DaemonArgs),
    Query(query::QueryArgs),
    Map(map::MapArgs),
    Ps(ps::PsArgs),
    Top(top::TopArgs),
    Aslr(aslr::AslrArgs),
    Wx(wx::WxArgs),
    Trace(trace::TraceArgs),
    Verify(verify::VerifyArgs),
    Origins(origins::OriginsArgs),
    Leaks(origins::LeaksArgs),
    Diff(diff::DiffArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    // The matches, not just the parsed values: `daemon` must tell a flag
    // given from a default shown in --help.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)
        .unwrap_or_else(|err| err.format(&mut Cli::command()).exit());
    let result = match cli.command {
        Command::Daemon(args) => {
            let (_, given) = matches.subcommand().expect("clap requires a subcommand");
            daemon::run(args, given)
        }
        Command::Query(args) => query::run(args),
        Command::Map(args) => map::run(args),
        Command::Ps(args) => ps::run(args),
        Command::Top(args) => top::run(args),
        Command::Aslr(args) => aslr::run(args),
        Command::Wx(args) => wx::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Origins(args) => origins::run_origins(args),
        Command::Leaks(args) => origins::run_leaks(args),
        Command::Diff(args) => diff::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("memmon: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line: `outer: inner: root`.
fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// A runtime for the event loop: the ring buffer, socket and timers share
/// one thread, which keeps event order trivially intact.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
