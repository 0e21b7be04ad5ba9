//! `cargo xtask setup`: every other subcommand runs this first.

use anyhow::{Result, bail};

use crate::env::{run, rust_cmd, sysroot, toolchain};
use crate::{apt, linker};

pub fn setup() -> Result<()> {
    ensure_rust_src()?;
    linker::ensure()?;
    apt::ensure()?;
    Ok(())
}

/// `-Z build-std=core` for the eBPF target compiles core from rust-src.
fn ensure_rust_src() -> Result<()> {
    let core = sysroot()?.join("lib/rustlib/src/rust/library/core");
    if core.is_dir() {
        println!("setup: rust-src present ({})", core.display());
        return Ok(());
    }
    // RUSTUP_AUTO_INSTALL=0 means nothing installs this implicitly.
    let tc = toolchain()?;
    println!("setup: rust-src missing, installing it for toolchain {tc}");
    run(rust_cmd("rustup")?.args(["component", "add", "rust-src", "--toolchain", &tc]))?;
    if !core.is_dir() {
        bail!(
            "rust-src installed for {tc}, but {} is still missing",
            core.display()
        );
    }
    Ok(())
}
