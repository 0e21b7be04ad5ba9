//! bpf-linker: it must exist AND start. It links the toolchain's libLLVM by
//! file name via an rpath, so a toolchain update leaves a binary that fails
//! at load time; hence we probe by running it, not by looking for the file.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::env::{output, run, rust_cmd, sysroot, target_dir};

const VERSION: &str = "0.13.0";
/// Cargo feature matching the LLVM major version of the pinned toolchain.
const LLVM_FEATURE: &str = "llvm-22";
/// Test hook: probe this binary instead of `bpf-linker` for the initial
/// "is it working" decision (e.g. /bin/false forces the install path).
const OVERRIDE_VAR: &str = "MEMMON_BPF_LINKER";

pub fn ensure() -> Result<()> {
    let probe = std::env::var_os(OVERRIDE_VAR).unwrap_or_else(|| "bpf-linker".into());
    match check(Path::new(&probe)) {
        Ok(v) => {
            println!("setup: {v} works");
            return Ok(());
        }
        Err(e) => println!("setup: bpf-linker not usable ({e:#}); installing {VERSION}"),
    }
    install()?;
    let v = check(Path::new("bpf-linker")).with_context(|| {
        format!(
            "bpf-linker {VERSION} was installed but `bpf-linker --version` still fails; \
             is cargo's bin directory (~/.cargo/bin or $CARGO_INSTALL_ROOT/bin) first on PATH?"
        )
    })?;
    println!("setup: {v} installed and works");
    Ok(())
}

/// Runs `<bin> --version` and requires it to report VERSION.
fn check(bin: &Path) -> Result<String> {
    let out = output(Command::new(bin).arg("--version"))?;
    if !out.split_whitespace().any(|w| w == VERSION) {
        bail!(
            "`{} --version` printed {out:?}, want {VERSION}",
            bin.display()
        );
    }
    Ok(out)
}

fn install() -> Result<()> {
    let lib = sysroot()?.join("lib");
    let prefix = llvm_prefix(&lib)?;
    println!(
        "setup: LLVM_PREFIX={} (links to {})",
        prefix.display(),
        lib.display()
    );
    println!("setup: cargo install bpf-linker@{VERSION} (takes a minute or two)");
    run(rust_cmd("cargo")?
        .args(["install", "--locked", &format!("bpf-linker@{VERSION}")])
        .args(["--no-default-features", "--features", LLVM_FEATURE])
        .env("LLVM_PREFIX", &prefix)
        // The rpath lets the linker find the toolchain's libLLVM at runtime.
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", lib.display()),
        ))
}

/// Builds target/llvm-prefix/lib with symlinks to the toolchain's libLLVM,
/// which is what llvm-sys looks for when linking dynamically.
pub fn llvm_prefix(sysroot_lib: &Path) -> Result<PathBuf> {
    let libllvm = find_libllvm(sysroot_lib)?;
    let name = libllvm
        .file_name()
        .context("libLLVM path has no file name")?;
    let prefix = target_dir().join("llvm-prefix");
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    for link in [lib.join("libLLVM.so"), lib.join(name)] {
        // Replace stale links left by an older toolchain.
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
        }
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("linking {} -> {}", link.display(), libllvm.display()))?;
    }
    Ok(prefix)
}

/// The single `libLLVM.so.*` in the sysroot; its name changes per release.
fn find_libllvm(dir: &Path) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "no libLLVM.so.* in {}; is the toolchain missing the rustc component?",
            dir.display()
        ),
        _ => bail!("several libLLVM.so.* in {}: {found:?}", dir.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_links_point_at_sysroot_libllvm() {
        let lib = sysroot().unwrap().join("lib");
        let real = find_libllvm(&lib).unwrap();
        let prefix = llvm_prefix(&lib).unwrap();
        for name in ["libLLVM.so".into(), real.file_name().unwrap().to_owned()] {
            let link = prefix.join("lib").join(name);
            assert_eq!(std::fs::read_link(&link).unwrap(), real);
        }
    }
}
