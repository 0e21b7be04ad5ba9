//! The file behind an mmap, read at sys_exit while the fd is still open:
//! current task -> files -> fdt -> fd[fd] -> struct file, then its inode's
//! (dev, ino) and its path, walked up the dentry chain and across mounts
//! as the kernel's d_path does (bpf_d_path is not allowed in tracepoints).
//! Every struct offset comes from [`KernelLayout`], read from the kernel's
//! BTF by userspace; all reads are `bpf_probe_read_kernel`, which fails
//! instead of faulting. The cost is paid by file mmaps only.

use core::ptr::read_volatile;

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel, generated};
use memmon_common::{
    FILE_NAME_READ, FILE_PATH_DEPTH, FILE_PATH_ROOM, FileMmapEvent, KernelLayout, file_status,
};

/// Struct member offsets, patched in by userspace from BTF.
#[unsafe(no_mangle)]
static KERNEL_LAYOUT: KernelLayout = KernelLayout {
    task_files: 0,
    task_tgid: 0,
    task_pid: 0,
    files_fdt: 0,
    fdt_max_fds: 0,
    fdt_fd: 0,
    file_inode: 0,
    file_dentry: 0,
    file_vfsmount: 0,
    inode_ino: 0,
    inode_sb: 0,
    sb_dev: 0,
    dentry_parent: 0,
    dentry_name: 0,
    dentry_hash_pprev: 0,
    dentry_op: 0,
    dentry_op_dname: 0,
    vfsmount_root: 0,
    mount_mnt: 0,
    mount_parent: 0,
    mount_mountpoint: 0,
    nr_mmap: 0,
    valid: 0,
};

#[inline(always)]
pub fn kernel_layout() -> KernelLayout {
    // SAFETY: a plain read of a global that userspace patches before load;
    // volatile keeps the compiler from folding in the zeros.
    unsafe { read_volatile(&KERNEL_LAYOUT) }
}

/// The `T` at `base + offset` in kernel memory.
#[inline(always)]
fn kread<T: Copy>(base: u64, offset: u32) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_kernel checks the address and returns an
    // error instead of faulting; callers only read integers and pointers.
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }.map_err(|e| e as i64)
}

#[inline(always)]
fn kptr(base: u64, offset: u32) -> Result<u64, i64> {
    let ptr: u64 = kread(base, offset)?;
    if ptr == 0 { Err(-1) } else { Ok(ptr) }
}

/// The `struct file *` of the current task's `fd`.
#[inline(always)]
fn current_file(l: &KernelLayout, fd: i32) -> Result<u64, i64> {
    if fd < 0 {
        return Err(-1);
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let files = kptr(task, l.task_files)?;
    let fdt = kptr(files, l.files_fdt)?;
    let max_fds: u32 = kread(fdt, l.fdt_max_fds)?;
    if fd as u32 >= max_fds {
        return Err(-1);
    }
    let fd_array = kptr(fdt, l.fdt_fd)?;
    kptr(fd_array, fd as u32 * 8)
}

/// Fills `event`'s file fields (everything after `syscall`) for `fd`.
///
/// # Safety
/// `event` must point at a writable [`FileMmapEvent`] (a reserved
/// ring-buffer record).
#[inline(always)]
pub unsafe fn fill(event: *mut FileMmapEvent, fd: i32) {
    let l = kernel_layout();
    // SAFETY: the caller's contract; each field is written before use.
    unsafe {
        (*event).ino = 0;
        (*event).dev = 0;
        (*event).status = 0;
        (*event).path_len = 0;
        (*event)._pad0 = 0;
        (*event).path[0] = 0;
    }
    if l.valid == 0 {
        return;
    }
    let Ok(file) = current_file(&l, fd) else {
        return;
    };
    let Ok(inode) = kptr(file, l.file_inode) else {
        return;
    };
    let (Ok(ino), Ok(sb)) = (kread::<u64>(inode, l.inode_ino), kptr(inode, l.inode_sb)) else {
        return;
    };
    let Ok(dev) = kread::<u32>(sb, l.sb_dev) else {
        return;
    };
    let mut status = file_status::FOUND;
    // SAFETY: as above.
    unsafe {
        (*event).ino = ino;
        (*event).dev = dev;
        (*event).status = status;
    }
    let Ok(dentry) = kptr(file, l.file_dentry) else {
        return;
    };
    let Ok(vfsmount) = kptr(file, l.file_vfsmount) else {
        return;
    };
    if is_deleted(&l, dentry) {
        status |= file_status::DELETED;
    }
    // SAFETY: as above; `path` is the record's own buffer.
    let (complete, len) = unsafe { walk(&l, dentry, vfsmount, (*event).path.as_mut_ptr()) };
    if complete {
        status |= file_status::PATH_COMPLETE;
    }
    // SAFETY: as above.
    unsafe {
        (*event).status = status;
        (*event).path_len = len;
    }
}

/// d_unlinked(): unhashed and not a filesystem root.
#[inline(always)]
fn is_deleted(l: &KernelLayout, dentry: u64) -> bool {
    let pprev: u64 = kread(dentry, l.dentry_hash_pprev).unwrap_or(1);
    let parent: u64 = kread(dentry, l.dentry_parent).unwrap_or(dentry);
    pprev == 0 && parent != dentry
}

/// Copies the path's components, leaf first and NUL-terminated, into
/// `buf`; true when the walk reached the root of the mount tree. Names
/// made up by `d_op->d_dname` (pipes, anon inodes) are not in the
/// dentry: those paths count as incomplete and userspace asks /proc.
///
/// # Safety
/// `buf` must hold `FILE_PATH_ROOM + FILE_NAME_READ` bytes.
#[inline(always)]
unsafe fn walk(l: &KernelLayout, mut dentry: u64, mut vfsmount: u64, buf: *mut u8) -> (bool, u32) {
    if let Ok(ops) = kptr(dentry, l.dentry_op)
        && kread::<u64>(ops, l.dentry_op_dname).unwrap_or(1) != 0
    {
        return (false, 0);
    }
    let mut mount = vfsmount - l.mount_mnt as u64;
    let mut off: usize = 0;
    for _ in 0..FILE_PATH_DEPTH {
        let Ok(root) = kread::<u64>(vfsmount, l.vfsmount_root) else {
            return (false, off as u32);
        };
        if dentry == root {
            let Ok(parent) = kptr(mount, l.mount_parent) else {
                return (false, off as u32);
            };
            if parent == mount {
                return (true, off as u32);
            }
            let Ok(mountpoint) = kptr(mount, l.mount_mountpoint) else {
                return (false, off as u32);
            };
            dentry = mountpoint;
            mount = parent;
            vfsmount = parent + l.mount_mnt as u64;
            continue;
        }
        let Ok(parent) = kptr(dentry, l.dentry_parent) else {
            return (false, off as u32);
        };
        if parent == dentry {
            // A filesystem root that is no mount's root (a detached
            // tree): d_path's "unreachable" case, left to /proc.
            return (false, off as u32);
        }
        let Ok(name) = kptr(dentry, l.dentry_name) else {
            return (false, off as u32);
        };
        // The mask restates the bound for the verifier (off < ROOM).
        let at = off & (FILE_PATH_ROOM - 1);
        // SAFETY: `at + FILE_NAME_READ` is within `buf`; the helper
        // bounds the copy and faults safely.
        let copied = unsafe {
            generated::bpf_probe_read_kernel_str(
                buf.add(at).cast(),
                FILE_NAME_READ as u32,
                name as *const core::ffi::c_void,
            )
        };
        if copied <= 0 {
            return (false, off as u32);
        }
        off = at + copied as usize;
        if off >= FILE_PATH_ROOM {
            return (false, off.min(FILE_PATH_ROOM + FILE_NAME_READ) as u32);
        }
        dentry = parent;
    }
    (false, off as u32)
}

/// The tgid and pid of a task, for the fork program.
#[inline(always)]
pub fn task_ids(task: u64) -> Result<(u32, u32), i64> {
    let l = kernel_layout();
    if l.valid == 0 {
        return Err(-1);
    }
    let tgid: i32 = kread(task, l.task_tgid)?;
    let pid: i32 = kread(task, l.task_pid)?;
    Ok((tgid as u32, pid as u32))
}
