//! The C fixtures in tests/fixtures, compiled with `cc` at test time.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub use memmon_testkit::TempDir;

pub fn fixture_source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.c"))
}

/// Compiles `tests/fixtures/<name>.c` into `dir/<name>`: the binary's name
/// (so its comm) is the fixture's name, which must fit in 15 bytes.
pub fn compile(dir: &TempDir, name: &str, extra_flags: &[&str]) -> PathBuf {
    assert!(
        name.len() <= 15,
        "fixture name {name:?} is longer than a comm (15 bytes)"
    );
    let out = dir.path().join(name);
    let output = Command::new("cc")
        .args(["-O0", "-g", "-pthread", "-Wall", "-o"])
        .arg(&out)
        .arg(fixture_source(name))
        .args(extra_flags)
        .output()
        .expect("run cc");
    assert!(
        output.status.success(),
        "cc failed for {name}.c ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// A fresh directory (removed with it) holding fixture `name`, compiled
/// with `extra_flags`: see [`compile`].
pub fn compiled(name: &str, extra_flags: &[&str]) -> (TempDir, PathBuf) {
    let dir = TempDir::new(name);
    let program = compile(&dir, name, extra_flags);
    (dir, program)
}
