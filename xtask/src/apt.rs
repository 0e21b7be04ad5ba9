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
/// the picture test renders `memmon map --svg` with rsvg-convert.
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
    ("rsvg-convert", "librsvg2-bin"),
];

pub fn ensure() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(cmd, _)| find_in_path(cmd).is_none())
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
        if find_in_path(cmd).is_none() {
            bail!("installed {pkg}, but `{cmd}` is still not on PATH");
        }
    }
    Ok(())
}
