//! Tracepoint field offsets, read from tracefs `format` files: sched
//! record layouts changed across kernel versions, so none are assumed; the
//! syscall records' offsets are built into the programs (direct loads) and
//! checked here.

use std::{fs, path::Path};

pub use memmon_common::tracepoints::TracepointId;
use memmon_common::{
    TracepointLayout, mmap_lock_record, syscall_record,
    tracepoints::{
        MEMORY_SYSCALLS, MMAP_LOCK_ACQUIRE_RETURNED, SCHED_PROCESS_EXEC, SCHED_PROCESS_EXIT,
    },
};

use super::{BpfError, preflight::TRACEFS};

/// Offset of `field` in a format file's text.
pub fn field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let line = line.trim();
        let decl = line.strip_prefix("field:")?.split(';').next()?;
        // The declaration ends with the field name, possibly followed by `[N]`.
        let name = decl
            .rsplit(|c: char| c.is_whitespace() || c == '*')
            .next()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        let offset = line
            .split(';')
            .find_map(|p| p.trim().strip_prefix("offset:"))?;
        offset.trim().parse().ok()
    })
}

fn read_format(tp: TracepointId) -> Result<String, BpfError> {
    let path = Path::new(TRACEFS)
        .join("events")
        .join(tp.category)
        .join(tp.name)
        .join("format");
    fs::read_to_string(&path)
        .map_err(|_| BpfError::MissingTracepoint(tp.to_string(), path.display().to_string()))
}

fn required(format: &str, tp: TracepointId, field: &str) -> Result<u32, BpfError> {
    field_offset(format, field).ok_or_else(|| BpfError::Layout {
        tracepoint: tp.to_string(),
        field: field.to_owned(),
        why: "no such field".into(),
    })
}

/// A syscall record field the kernel programs read at a build-time offset
/// (see `memmon_common::syscall_record`): this kernel must agree.
fn fixed(format: &str, tp: TracepointId, field: &str, built: u32) -> Result<u32, BpfError> {
    let found = required(format, tp, field)?;
    if found == built {
        Ok(found)
    } else {
        Err(BpfError::Layout {
            tracepoint: tp.to_string(),
            field: field.to_owned(),
            why: format!(
                "at offset {found}, but memmon's kernel programs read it at {built} \
                 (fixed when they were built); this kernel needs a memmon built for it"
            ),
        })
    }
}

/// Reads every layout the kernel programs depend on, and checks the
/// offsets built into them.
pub fn read_layout() -> Result<TracepointLayout, BpfError> {
    // Every syscall's record has the same layout; mmap's stands for all
    // (check_syscall_args verifies each one).
    let exit = MEMORY_SYSCALLS[0].exit;
    let (exec, exit_tp) = (SCHED_PROCESS_EXEC, SCHED_PROCESS_EXIT);
    let exit_fmt = read_format(exit)?;
    let exit_tp_fmt = read_format(exit_tp)?;
    let exec_fmt = read_format(exec)?;
    let lock = MMAP_LOCK_ACQUIRE_RETURNED;
    fixed(&read_format(lock)?, lock, "write", mmap_lock_record::WRITE)?;
    fixed(&exit_fmt, exit, "ret", syscall_record::RET)?;
    fixed(&exit_fmt, exit, "__syscall_nr", syscall_record::NR)?;
    Ok(TracepointLayout {
        exec_filename: required(&exec_fmt, exec, "filename")?,
        exec_old_pid: required(&exec_fmt, exec, "old_pid")?,
        exit_group_dead: field_offset(&exit_tp_fmt, "group_dead")
            .unwrap_or(TracepointLayout::ABSENT),
        nr_clone: libc::SYS_clone as u32,
        nr_prctl: libc::SYS_prctl as u32,
        nr_io_setup: libc::SYS_io_setup as u32,
    })
}

/// The exit program reads `ret` at its built-in offset from every
/// `sys_exit_*` record: check that `tp` keeps it there (and only 8-byte
/// fields after it).
pub fn check_syscall_args(tp: TracepointId) -> Result<(), BpfError> {
    let fmt = read_format(tp)?;
    let offsets: Vec<u32> = fmt
        .lines()
        .filter(|l| l.contains("field:") && !l.contains("common_") && !l.contains("__syscall_nr"))
        .filter_map(|l| l.split(';').find_map(|p| p.trim().strip_prefix("offset:")))
        .filter_map(|o| o.trim().parse().ok())
        .collect();
    let consecutive = offsets
        .iter()
        .enumerate()
        .all(|(i, off)| *off == syscall_record::RET + 8 * i as u32);
    if consecutive {
        Ok(())
    } else {
        Err(BpfError::Layout {
            tracepoint: tp.to_string(),
            field: "arguments".into(),
            why: format!("unexpected offsets {offsets:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MMAP_ENTER: &str = "name: sys_enter_mmap\nID: 98\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:unsigned long addr;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:unsigned long len;\toffset:24;\tsize:8;\tsigned:0;\n";
    const EXEC: &str = "\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\tfield:char comm[16];\toffset:24;\tsize:16;\tsigned:0;\n\tfield:char * shmaddr;\toffset:40;\tsize:8;\tsigned:0;\n";

    #[test]
    fn finds_fields_by_exact_name() {
        assert_eq!(field_offset(MMAP_ENTER, "addr"), Some(16));
        assert_eq!(field_offset(MMAP_ENTER, "__syscall_nr"), Some(8));
        assert_eq!(field_offset(MMAP_ENTER, "len"), Some(24));
        assert_eq!(field_offset(MMAP_ENTER, "ad"), None);
        assert_eq!(field_offset(EXEC, "filename"), Some(8));
        assert_eq!(field_offset(EXEC, "comm"), Some(24));
        assert_eq!(field_offset(EXEC, "shmaddr"), Some(40));
        assert_eq!(field_offset("garbage\n\n", "pid"), None);
    }
}
