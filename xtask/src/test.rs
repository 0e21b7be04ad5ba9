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
    let mut cmd = cargo()?;
    cmd.arg("test");
    // `--workspace` would override a `-p` the caller passed to narrow the run.
    if !selects_package(extra) {
        cmd.arg("--workspace");
    }
    phase("cargo test");
    run(cmd.args(extra))?;
    phase("tests passed");
    Ok(())
}

/// Whether cargo-level args (those before a `--`) pick packages themselves.
fn selects_package(args: &[String]) -> bool {
    args.iter().take_while(|a| *a != "--").any(|a| {
        a == "-p" || a == "--package" || a.starts_with("--package=") || a.starts_with("-p")
    })
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

#[cfg(test)]
mod tests {
    use super::selects_package;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn package_selection_is_detected_before_separator_only() {
        assert!(selects_package(&args(&["-p", "memmon"])));
        assert!(selects_package(&args(&["-pmemmon"])));
        assert!(selects_package(&args(&["--package=memmon"])));
        assert!(!selects_package(&args(&["--release", "--", "-p"])));
        assert!(!selects_package(&args(&[])));
    }
}
