//! Debian packages providing commands the tests use.

use anyhow::{Result, bail};

use crate::env::{as_root, find_in_path, run};

/// Commands the tests run, and the Debian package that provides each: the
/// metrics test starts a real Prometheus and checks with promtool, and
/// `cargo xtask bench` compares the daemon's overhead with bpftrace's;
/// the reliability tests list kernel objects with bpftool; `xtask fuzz`
/// bounds memory with prlimit; the FUSE test builds a squashfs image,
/// serves it with squashfuse and unmounts with fusermount3; pmap is the
/// yardstick for query latency (issue 10: a query no slower than pmap);
/// the compat test builds a 32-bit fixture (`cc -m32`); the `memmon top`
/// test drives it in a tmux pane; the W^X events test runs real JITs
/// (node, and java with a class javac compiles). An entry starting with `/` is a file the
/// package installs, for packages with no command.
const PACKAGES: &[(&str, &str)] = &[
    ("cc", "gcc"),
    ("setarch", "util-linux"),
    ("setpriv", "util-linux"),
    ("useradd", "passwd"),
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    ("bpftrace", "bpftrace"),
    ("bpftool", "bpftool"),
    ("prlimit", "util-linux"),
    ("fusermount3", "fuse3"),
    ("squashfuse", "squashfuse"),
    ("mksquashfs", "squashfs-tools"),
    ("pmap", "procps"),
    // gcc-multilib's own file: the /usr/include/asm link `-m32` needs.
    ("/usr/include/asm", "gcc-multilib"),
    ("tmux", "tmux"),
    ("node", "nodejs"),
    ("java", "default-jre-headless"),
    ("javac", "default-jdk-headless"),
    ("rsvg-convert", "librsvg2-bin"),
];

/// Whether `probe` (a command, or a file when it starts with `/`) is there.
fn present(probe: &str) -> bool {
    if probe.starts_with('/') {
        std::path::Path::new(probe).exists()
    } else {
        find_in_path(probe).is_some()
    }
}

pub fn ensure() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(cmd, _)| !present(cmd))
        .map(|&(_, pkg)| pkg)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if missing.is_empty() {
        let cmds: Vec<&str> = PACKAGES.iter().map(|&(cmd, _)| cmd).collect();
        println!("setup: commands present: {}", cmds.join(", "));
        return Ok(());
    }
    println!("setup: installing apt packages: {}", missing.join(" "));
    // One update before the (single) install: fresh containers have no lists.
    run(as_root("apt-get")?.arg("update"))?;
    run(as_root("apt-get")?
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y"])
        .args(&missing))?;
    // Catches a wrong (command, package) pair in the table.
    for (cmd, pkg) in PACKAGES {
        if !present(cmd) {
            bail!("installed {pkg}, but `{cmd}` is still missing");
        }
    }
    Ok(())
}
