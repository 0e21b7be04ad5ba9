//! Builds the kernel programs (`memmon-ebpf`) for the BPF target and places
//! the object in OUT_DIR, where `src/bpf/loader.rs` embeds it.
//!
//! Stable rustc builds it with `-Z build-std=core` under RUSTC_BOOTSTRAP=1,
//! using the toolchain named by RUSTUP_TOOLCHAIN (the pinned one).
//! With AYA_BUILD_SKIP=1 no object is built: a placeholder is written so
//! that the crate still compiles, and the binary refuses to load it with a
//! message that says why, instead of reusing a stale object.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// Written in place of the object when the eBPF build is skipped; the
/// loader recognises it by this exact content.
const PLACEHOLDER: &[u8] = b"memmon: eBPF build skipped (AYA_BUILD_SKIP=1)\n";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    println!("cargo:rerun-if-env-changed=RUSTUP_TOOLCHAIN");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let object = out_dir.join("memmon");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        fs::write(&object, PLACEHOLDER).context("writing the eBPF placeholder")?;
        return Ok(());
    }
    // A stale object from an earlier build must never survive a failed one.
    let _ = fs::remove_file(&object);
    // aya-build passes `-Z build-std=core` only when RUSTC_BOOTSTRAP=1, and
    // the pinned toolchain is stable; setting it here makes a plain
    // `cargo build` work too, not only `cargo xtask build`.
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    let toolchain = env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| "1.95.0".to_owned());
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir.join("../memmon-ebpf");
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    println!("cargo:rerun-if-changed=../memmon-common/src");
    aya_build::build_ebpf(
        [Package { name: "memmon-ebpf", root_dir: ebpf_dir, ..Default::default() }],
        Toolchain::Custom(&toolchain),
    )
    .context("building the eBPF programs (run `cargo xtask build`, which installs bpf-linker and sets RUSTC_BOOTSTRAP=1)")?;
    if !object.exists() {
        return Err(anyhow!(
            "aya-build produced no object at {}",
            object.display()
        ));
    }
    Ok(())
}
