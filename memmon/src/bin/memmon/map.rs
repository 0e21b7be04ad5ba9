//! `memmon map <pid>`: the address space as a picture, in the terminal or
//! (`--svg FILE`) as a standalone SVG.

use std::{io::IsTerminal as _, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Args;

use memmon::{
    client::{Client, DEFAULT_SOCKET},
    report::picture::{DEFAULT_MAX_BANDS, Picture, render_svg, render_text},
};

/// Draw a process's address space as the seed documents do: high
/// addresses at the top ([vsyscall], [stack], the mmap area with libraries,
/// thread stacks and arenas, the gap, [heap] with the program break, then
/// the executable's bss, data, rodata and text). Bar heights follow a log
/// scale of size; runs of small similar regions collapse into one
/// labelled band. Asks the running daemon.
#[derive(Debug, Args)]
pub struct MapArgs {
    pid: u32,
    /// Write the picture as a standalone SVG to FILE (tooltips per region)
    /// instead of drawing it in the terminal.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Collapse runs of small regions until at most about N bands remain.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_BANDS)]
    bands: usize,
    /// The daemon's socket.
    #[arg(long, value_name = "PATH", env = "MEMMON_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

pub fn run(args: MapArgs) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(&args.socket)?;
    let layout = crate::query::fetch(&mut client, args.pid, Default::default())?;
    let picture = Picture::new(&layout, args.bands.max(1));
    match &args.svg {
        Some(path) => {
            std::fs::write(path, render_svg(&picture)).with_context(|| {
                format!("cannot write {}: choose a writable path", path.display())
            })?;
        }
        None => print!("{}", render_text(&picture, std::io::stdout().is_terminal())),
    }
    Ok(ExitCode::SUCCESS)
}
