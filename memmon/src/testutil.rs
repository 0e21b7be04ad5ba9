//! Helpers shared by unit tests: C fixtures compiled on the fly.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh scratch directory under the system temp dir.
pub fn scratch_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "memmon-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Compiles `src` with `cc` and `args`; `None` (with a note) when no C
/// compiler is installed, so the rest of the suite still runs.
pub fn compile_c(name: &str, src: &str, args: &[&str]) -> Option<PathBuf> {
    let dir = scratch_dir();
    let c = dir.join(format!("{name}.c"));
    let out = dir.join(name);
    std::fs::write(&c, src).expect("write C source");
    match Command::new("cc")
        .args(args)
        .arg("-o")
        .arg(&out)
        .arg(&c)
        .output()
    {
        Ok(o) if o.status.success() => Some(out),
        Ok(o) => panic!("cc failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            eprintln!("skipping: cannot run cc: {e}");
            None
        }
    }
}

/// Path of a library mapped into this test process, e.g. `libc.so.6`.
pub fn mapped_library(file_name: &str) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.rsplit('/').next() == Some(file_name))
        .map(String::from)
}
