//! `memmon daemon`: keeps the live model of every process.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{ArgMatches, Args, parser::ValueSource};
use memmon::{
    config::{
        Config, DEFAULT_HISTORY_LEN, DEFAULT_METRICS_ADDR, DEFAULT_RINGBUF_SIZE, DEFAULT_SOCKET,
        DEFAULT_VERIFY_INTERVAL_SECS, Grouping,
    },
    daemon::{Daemon, DaemonConfig},
};

/// Run the monitoring daemon (needs root, or CAP_BPF + CAP_PERFMON +
/// CAP_SYS_PTRACE, and CAP_SYS_ADMIN when tracefs must be mounted).
///
/// It attaches the kernel programs, seeds a model of every process from
/// /proc, keeps each model current from the event stream and answers
/// `memmon query`, `ps`, `verify` and friends on a Unix socket. Flags
/// override the configuration file; both default as documented in
/// deploy/memmon.toml.
// The defaults below are the configuration's own, for --help: a flag left
// out keeps the file's value (see `overlay`).
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Unix socket for queries.
    #[arg(long, value_name = "PATH", env = "MEMMON_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Group whose members may connect to the socket (mode 0660); each of
    /// them sees only their own processes.
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, value_name = "ADDR", default_value_t = DEFAULT_METRICS_ADDR)]
    metrics_addr: SocketAddr,
    /// Ring buffer size in bytes, a power of two.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RINGBUF_SIZE)]
    ringbuf_size: u64,
    /// Recent events kept per process.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HISTORY_LEN)]
    history: usize,
    /// Seconds between checks of a sample of models against /proc; 0: off.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_VERIFY_INTERVAL_SECS)]
    verify_interval: u64,
    /// How metrics group processes.
    #[arg(long, value_enum, default_value_t = Grouping::default())]
    grouping: Grouping,
    /// Do not read memory syscalls' call sites in the kernel (they are
    /// read by default: `call_sites = true`).
    #[arg(long)]
    no_call_sites: bool,
    /// Also capture each memory syscall's full user stack (off by default:
    /// `stacks = false`).
    #[arg(long)]
    stacks: bool,
}

/// The file's settings with the flags laid over them.
fn effective_config(args: &DaemonArgs, matches: &ArgMatches) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    overlay(&mut config, args, matches);
    Ok(config)
}

/// Lays the flags given on the command line or in the environment over
/// `config`; a value clap filled in from its default leaves the file's.
fn overlay(config: &mut Config, args: &DaemonArgs, matches: &ArgMatches) {
    // Ids are the field names; clap panics on an unknown one in debug builds.
    let given = |id: &str| {
        matches
            .value_source(id)
            .is_some_and(|source| source != ValueSource::DefaultValue)
    };
    if given("socket") {
        config.socket = args.socket.clone();
    }
    if let Some(v) = &args.socket_group {
        config.socket_group = Some(v.clone());
    }
    if given("metrics_addr") {
        config.metrics_addr = args.metrics_addr;
    }
    if given("ringbuf_size") {
        config.ringbuf_size = args.ringbuf_size;
    }
    if given("history") {
        config.history_len = args.history;
    }
    if given("verify_interval") {
        config.verify_interval_secs = args.verify_interval;
    }
    if given("grouping") {
        config.grouping = args.grouping;
    }
    if args.no_call_sites {
        config.call_sites = false;
    }
    if args.stacks {
        config.stacks = true;
    }
}

pub fn run(args: DaemonArgs, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let config = effective_config(&args, matches)?;
    let socket_group = match &config.socket_group {
        Some(name) => Some(
            memmon::users::group_id(name)
                .with_context(|| format!("socket_group {name}: no such group"))?,
        ),
        None => None,
    };
    let daemon_config = DaemonConfig {
        socket_group,
        ..DaemonConfig::from(&config)
    };
    let rt = super::runtime()?;
    let daemon = rt.block_on(Daemon::start(daemon_config))?;
    let socket = config.socket.display().to_string();
    let metrics = daemon
        .metrics_addr()
        .map(|a| format!(", metrics on http://{a}/metrics"))
        .unwrap_or_default();
    rt.block_on(daemon.run(super::shutdown_signal(), |tracker| {
        // Tests and scripts wait for this line.
        eprintln!(
            "memmon: daemon ready: {} processes tracked, serving {socket}{metrics}",
            tracker.len()
        );
    }))?;
    eprintln!("memmon: daemon stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::{Command, FromArgMatches as _};

    use memmon::config::{DEFAULT_CALL_SITES, DEFAULT_STACKS};

    use super::*;

    /// `daemon` parsed from `argv`, with MEMMON_SOCKET ignored so the
    /// caller's environment cannot count as a flag.
    fn parse(argv: &[&str]) -> (DaemonArgs, ArgMatches) {
        let command =
            DaemonArgs::augment_args(Command::new("daemon")).mut_arg("socket", |arg| arg.env(None));
        let matches = command
            .try_get_matches_from(std::iter::once("daemon").chain(argv.iter().copied()))
            .unwrap();
        (DaemonArgs::from_arg_matches(&matches).unwrap(), matches)
    }

    /// A file that sets every overridable field to something no default is.
    fn file() -> Config {
        Config::parse(
            "socket = \"/file.sock\"\nsocket_group = \"filegroup\"\n\
             metrics_addr = \"127.0.0.1:1111\"\nringbuf_size = 8192\nhistory_len = 7\n\
             verify_interval_secs = 9\ngrouping = \"cgroup\"\n",
            "file",
        )
        .unwrap()
    }

    #[test]
    fn flags_left_out_keep_the_files_values() {
        let (args, matches) = parse(&[]);
        let mut config = file();
        overlay(&mut config, &args, &matches);
        assert_eq!(config, file());
    }

    #[test]
    fn flags_given_override_the_file() {
        let (args, matches) = parse(&[
            "--socket=/flag.sock",
            "--socket-group=flaggroup",
            "--metrics-addr=127.0.0.1:2222",
            "--ringbuf-size=16384",
            "--history=3",
            "--verify-interval=0",
            "--grouping=comm",
            "--no-call-sites",
            "--stacks",
        ]);
        let mut config = file();
        overlay(&mut config, &args, &matches);
        assert_eq!(
            config,
            Config {
                socket: "/flag.sock".into(),
                socket_group: Some("flaggroup".into()),
                metrics_addr: "127.0.0.1:2222".parse().unwrap(),
                ringbuf_size: 16384,
                history_len: 3,
                verify_interval_secs: 0,
                grouping: Grouping::Comm,
                call_sites: false,
                stacks: true,
                ..file()
            }
        );
    }

    /// A flag equal to the default still counts as given.
    #[test]
    fn a_flag_equal_to_the_default_overrides_the_file() {
        let history = DEFAULT_HISTORY_LEN.to_string();
        let (args, matches) = parse(&["--history", &history]);
        let mut config = file();
        overlay(&mut config, &args, &matches);
        assert_eq!(config.history_len, DEFAULT_HISTORY_LEN);
    }

    #[test]
    fn help_shows_the_configs_defaults() {
        let help = DaemonArgs::augment_args(Command::new("daemon"))
            .render_long_help()
            .to_string();
        let defaults = Config::default();
        for shown in [
            defaults.socket.display().to_string(),
            defaults.metrics_addr.to_string(),
            defaults.ringbuf_size.to_string(),
            defaults.history_len.to_string(),
            defaults.verify_interval_secs.to_string(),
            "unit".to_owned(),
        ] {
            assert!(
                help.contains(&format!("[default: {shown}]")),
                "{shown} in {help}"
            );
        }
        // Switches show their default in their text.
        assert!(
            help.contains(&format!("call_sites = {DEFAULT_CALL_SITES}")),
            "{help}"
        );
        assert!(
            help.contains(&format!("stacks = {DEFAULT_STACKS}")),
            "{help}"
        );
    }
}
