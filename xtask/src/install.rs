//! `cargo xtask install`: release build, then the binary, the systemd unit
//! and the configuration file in their places.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::build::build;
use crate::env::repo_root;

/// Where deploy/memmon.service expects the binary.
const DEFAULT_PREFIX: &str = "/usr/local";

/// Installs PREFIX/bin/memmon, the unit and (unless present, or with
/// `force`) the configuration, each under `destdir` when given.
pub fn install(prefix: &Path, destdir: Option<&Path>, force: bool) -> Result<()> {
    if !prefix.is_absolute() {
        bail!("--prefix must be absolute, got {}", prefix.display());
    }
    // It ends up unquoted in ExecStart=.
    if prefix
        .to_str()
        .is_none_or(|p| p.contains(char::is_whitespace))
    {
        bail!("--prefix must be UTF-8 without spaces, got {:?}", prefix);
    }
    let bin = build(true)?;
    let root = |path: &Path| staged(destdir, path);

    let bin_path = prefix.join("bin/memmon");
    let bin_dest = root(&bin_path);
    copy_file(&bin, &bin_dest, 0o755)?;
    println!("installed {}", bin_dest.display());

    let deploy = repo_root().join("deploy");
    let unit_src = deploy.join("memmon.service");
    let unit =
        fs::read_to_string(&unit_src).with_context(|| format!("reading {}", unit_src.display()))?;
    let unit = rewrite_exec_start(&unit, &bin_path)?;
    let unit_dest = root(Path::new("/etc/systemd/system/memmon.service"));
    write_file(&unit_dest, unit.as_bytes(), 0o644)?;
    println!("installed {}", unit_dest.display());

    let config_dest = root(Path::new("/etc/memmon/memmon.toml"));
    if config_dest.exists() && !force {
        println!(
            "kept      {} (exists; --force replaces it)",
            config_dest.display()
        );
    } else {
        copy_file(&deploy.join("memmon.toml"), &config_dest, 0o644)?;
        println!("installed {}", config_dest.display());
    }

    if destdir.is_none() {
        println!("next: systemctl daemon-reload && systemctl enable --now memmon");
    }
    Ok(())
}

/// `path` (absolute) under `destdir`, or `path` itself without one.
fn staged(destdir: Option<&Path>, path: &Path) -> PathBuf {
    match destdir {
        // Path::join with an absolute path would discard destdir.
        Some(dir) => dir.join(
            path.components()
                .filter(|c| !matches!(c, Component::RootDir))
                .collect::<PathBuf>(),
        ),
        None => path.to_path_buf(),
    }
}

/// The unit with the binary of its `ExecStart=` replaced by `bin`, the
/// arguments kept. Fails rather than installing a unit that would start
/// some other binary.
fn rewrite_exec_start(unit: &str, bin: &Path) -> Result<String> {
    let default_bin = Path::new(DEFAULT_PREFIX).join("bin/memmon");
    let mut found = false;
    let mut out = String::with_capacity(unit.len());
    for line in unit.lines() {
        match line.strip_prefix("ExecStart=") {
            Some(rest) => {
                let (program, args) = rest.split_once(' ').unwrap_or((rest, ""));
                if Path::new(program) != default_bin {
                    bail!(
                        "deploy/memmon.service: expected ExecStart={default_bin:?}, found {program:?}"
                    );
                }
                found = true;
                out.push_str("ExecStart=");
                out.push_str(&bin.to_string_lossy());
                if !args.is_empty() {
                    out.push(' ');
                    out.push_str(args);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    if !found {
        bail!("deploy/memmon.service has no ExecStart= line");
    }
    Ok(out)
}

fn copy_file(src: &Path, dest: &Path, mode: u32) -> Result<()> {
    let bytes = fs::read(src).with_context(|| format!("reading {}", src.display()))?;
    write_file(dest, &bytes, mode)
}

/// Writes through a temporary file and a rename, so a running memmon's
/// binary is replaced rather than overwritten in place (ETXTBSY).
fn write_file(dest: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = dest
        .parent()
        .with_context(|| format!("{} has no parent directory", dest.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = dest.file_name().context("no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.xtask-install"));
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", tmp.display()))?;
    fs::rename(&tmp, dest).with_context(|| format!("renaming to {}", dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destdir_is_prepended() {
        assert_eq!(
            staged(
                Some(Path::new("/tmp/d")),
                Path::new("/etc/memmon/memmon.toml")
            ),
            Path::new("/tmp/d/etc/memmon/memmon.toml")
        );
        assert_eq!(staged(None, Path::new("/etc/x")), Path::new("/etc/x"));
    }

    #[test]
    fn exec_start_follows_the_prefix() {
        let unit = "[Service]\nExecStart=/usr/local/bin/memmon daemon --config /etc/memmon/memmon.toml\nRestart=on-failure\n";
        let out = rewrite_exec_start(unit, Path::new("/opt/memmon/bin/memmon")).unwrap();
        assert_eq!(
            out,
            "[Service]\nExecStart=/opt/memmon/bin/memmon daemon --config /etc/memmon/memmon.toml\nRestart=on-failure\n"
        );
        let same = rewrite_exec_start(unit, Path::new("/usr/local/bin/memmon")).unwrap();
        assert_eq!(same, unit);
    }

    #[test]
    fn the_shipped_unit_can_be_rewritten() {
        let unit = fs::read_to_string(repo_root().join("deploy/memmon.service")).unwrap();
        rewrite_exec_start(&unit, Path::new("/usr/bin/memmon")).unwrap();
    }

    #[test]
    fn an_unexpected_exec_start_is_refused() {
        assert!(
            rewrite_exec_start("ExecStart=/bin/sh -c x\n", Path::new("/usr/bin/memmon")).is_err()
        );
        assert!(rewrite_exec_start("[Service]\n", Path::new("/usr/bin/memmon")).is_err());
    }
}
