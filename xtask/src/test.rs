//! `cargo xtask test` and `cargo xtask lint`.

use anyhow::Result;

use crate::env::{cargo, run};
use crate::setup::setup;

fn phase(name: &str) {
    println!("\n==> {name}");
}

/// Unit and integration tests; the root/BPF-only integration tests in
/// memmon/tests/ check their own preconditions.
pub fn test(extra: &[String]) -> Result<()> {
    phase("setup");
    setup()?;
    phase("cargo test --workspace");
    run(cargo()?.args(["test", "--workspace"]).args(extra))?;
    phase("tests passed");
    Ok(())
}

pub fn lint() -> Result<()> {
    phase("setup");
    setup()?;
    phase("cargo fmt --check");
    run(cargo()?.args(["fmt", "--all", "--check"]))?;
    phase("cargo clippy");
    run(cargo()?.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    Ok(())
}
