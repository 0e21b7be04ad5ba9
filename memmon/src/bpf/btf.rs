//! Struct member offsets from the kernel's BTF (/sys/kernel/btf/vmlinux),
//! for the kernel programs that read `task_struct`, `file`, `dentry` and
//! `mount` with `bpf_probe_read_kernel`. aya 0.14 parses BTF but does not
//! expose members, so this is a small reader of the format
//! (Documentation/bpf/btf.rst): a header, a type section, a string section.

use std::collections::HashMap;

use memmon_common::KernelLayout;

use super::BpfError;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

struct Member {
    name: u32,
    type_id: u32,
    bit_offset: u32,
}

struct Type {
    kind: u32,
    name: u32,
    /// Size, or the referenced type for modifiers and typedefs.
    size_or_type: u32,
    members: Vec<Member>,
}

/// The parsed types of one BTF blob: enough to look up member offsets.
pub struct Btf {
    /// Index = type id; id 0 is `void`.
    types: Vec<Type>,
    strings: Vec<u8>,
    structs: HashMap<String, u32>,
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

impl Btf {
    /// Parses a little-endian BTF blob (the only byte order memmon builds for).
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let magic = data.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if magic != Some(MAGIC) {
            return Err("not little-endian BTF (bad magic)".into());
        }
        let field = |at| u32_at(data, at).ok_or("truncated BTF header");
        let hdr_len = field(4)? as usize;
        let (type_off, type_len) = (field(8)? as usize, field(12)? as usize);
        let (str_off, str_len) = (field(16)? as usize, field(20)? as usize);
        let section = |off: usize, len: usize| {
            data.get(hdr_len + off..hdr_len + off + len)
                .ok_or("BTF section out of bounds")
        };
        let type_data = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?.to_vec();
        let mut types = vec![Type {
            kind: 0,
            name: 0,
            size_or_type: 0,
            members: Vec::new(),
        }];
        let mut at = 0;
        while at < type_data.len() {
            let word = |i: usize| u32_at(type_data, at + 4 * i).ok_or("truncated BTF type");
            let (name, info, size_or_type) = (word(0)?, word(1)?, word(2)?);
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            at += 12;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = |j: usize| {
                            u32_at(type_data, at + 12 * i + 4 * j).ok_or("truncated BTF member")
                        };
                        let offset = m(2)?;
                        members.push(Member {
                            name: m(0)?,
                            type_id: m(1)?,
                            // With kind_flag the top 8 bits are a bitfield size.
                            bit_offset: if kind_flag {
                                offset & 0xff_ffff
                            } else {
                                offset
                            },
                        });
                    }
                    12 * vlen
                }
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                0 | 20.. => return Err(format!("unknown BTF kind {kind}")),
                _ => 0,
            };
            at += extra;
            types.push(Type {
                kind,
                name,
                size_or_type,
                members,
            });
        }
        let mut btf = Self {
            types,
            strings,
            structs: HashMap::new(),
        };
        let mut structs = HashMap::new();
        for (id, ty) in btf.types.iter().enumerate() {
            // The first complete definition wins (vmlinux BTF is deduplicated).
            if ty.kind == KIND_STRUCT && ty.name != 0 && !ty.members.is_empty() {
                structs
                    .entry(btf.string(ty.name).to_owned())
                    .or_insert(id as u32);
            }
        }
        btf.structs = structs;
        Ok(btf)
    }

    fn string(&self, offset: u32) -> &str {
        let rest = self.strings.get(offset as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Skips typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let ty = self.types.get(id as usize)?;
            match ty.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = ty.size_or_type
                }
                _ => return Some(ty),
            }
        }
        None
    }

    /// Bit offset and type of `name` in `ty`, looking inside anonymous
    /// struct and union members as C does.
    fn find_member(&self, ty: &Type, name: &str) -> Option<(u32, u32)> {
        for member in &ty.members {
            if member.name != 0 {
                if self.string(member.name) == name {
                    return Some((member.bit_offset, member.type_id));
                }
                continue;
            }
            let inner = self.resolve(member.type_id)?;
            if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                && let Some((bits, type_id)) = self.find_member(inner, name)
            {
                return Some((member.bit_offset + bits, type_id));
            }
        }
        None
    }

    /// Byte offset of `path` (members separated by dots, e.g.
    /// `f_path.dentry`) inside `struct strukt`.
    pub fn offset(&self, strukt: &str, path: &str) -> Option<u32> {
        let mut ty = &self.types[*self.structs.get(strukt)? as usize];
        let mut bits = 0;
        for name in path.split('.') {
            let (offset, type_id) = self.find_member(ty, name)?;
            bits += offset;
            ty = self.resolve(type_id)?;
        }
        (bits % 8 == 0).then_some(bits / 8)
    }
}

/// Reads every offset in [`KernelLayout`] from this kernel's BTF.
pub fn kernel_layout(btf: &Btf) -> Result<KernelLayout, BpfError> {
    let get = |strukt: &str, path: &str| {
        btf.offset(strukt, path).ok_or_else(|| BpfError::Btf {
            what: format!("struct {strukt} has no member {path}"),
        })
    };
    Ok(KernelLayout {
        task_files: get("task_struct", "files")?,
        task_tgid: get("task_struct", "tgid")?,
        task_pid: get("task_struct", "pid")?,
        files_fdt: get("files_struct", "fdt")?,
        fdt_max_fds: get("fdtable", "max_fds")?,
        fdt_fd: get("fdtable", "fd")?,
        file_inode: get("file", "f_inode")?,
        file_dentry: get("file", "f_path.dentry")?,
        file_vfsmount: get("file", "f_path.mnt")?,
        inode_ino: get("inode", "i_ino")?,
        inode_sb: get("inode", "i_sb")?,
        sb_dev: get("super_block", "s_dev")?,
        dentry_parent: get("dentry", "d_parent")?,
        dentry_name: get("dentry", "d_name.name")?,
        dentry_hash_pprev: get("dentry", "d_hash.pprev")?,
        dentry_op: get("dentry", "d_op")?,
        dentry_op_dname: get("dentry_operations", "d_dname")?,
        vfsmount_root: get("vfsmount", "mnt_root")?,
        mount_mnt: get("mount", "mnt")?,
        mount_parent: get("mount", "mnt_parent")?,
        mount_mountpoint: get("mount", "mnt_mountpoint")?,
        nr_mmap: libc::SYS_mmap as u32,
        valid: 1,
    })
}

/// [`kernel_layout`] of the running kernel.
pub fn read_kernel_layout() -> Result<KernelLayout, BpfError> {
    let data = std::fs::read(VMLINUX_BTF).map_err(|e| BpfError::Btf {
        what: format!("cannot read {VMLINUX_BTF}: {e}"),
    })?;
    let btf = Btf::parse(&data).map_err(|what| BpfError::Btf {
        what: format!("{VMLINUX_BTF}: {what}"),
    })?;
    kernel_layout(&btf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member: (name, type id, offset).
    type Member<'a> = (&'a str, u32, u32);
    /// A type: (kind, name, size_or_type, members).
    type TypeSpec<'a> = (u32, &'a str, u32, &'a [Member<'a>]);

    /// Builds a BTF blob from type specs.
    fn blob(types: &[TypeSpec], kind_flag: bool) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut intern = |s: &str| {
            if s.is_empty() {
                return 0;
            }
            let at = strings.len() as u32;
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            at
        };
        let mut type_data = Vec::new();
        for (kind, name, size, members) in types {
            let flag = if kind_flag { 1 << 31 } else { 0 };
            let info = (kind << 24) | members.len() as u32 | flag;
            for w in [intern(name), info, *size] {
                type_data.extend_from_slice(&w.to_le_bytes());
            }
            if *kind == KIND_INT {
                type_data.extend_from_slice(&64u32.to_le_bytes());
            }
            for (mname, mtype, bits) in *members {
                for w in [intern(mname), *mtype, *bits] {
                    type_data.extend_from_slice(&w.to_le_bytes());
                }
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [24u32, 0, type_data.len() as u32, type_data.len() as u32] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.extend_from_slice(&type_data);
        out.extend_from_slice(&strings);
        out
    }

    /// `struct path { void *mnt; void *dentry; }` and a `struct file`
    /// whose f_path sits in an anonymous union behind a typedef'd const,
    /// as in Linux 6.12+.
    fn sample(kind_flag: bool) -> Btf {
        let data = blob(
            &[
                (KIND_INT, "long", 8, &[]),                                     // 1
                (KIND_STRUCT, "path", 16, &[("mnt", 1, 0), ("dentry", 1, 64)]), // 2
                (KIND_CONST, "", 2, &[]),                                       // 3
                (KIND_UNION, "", 16, &[("f_path", 3, 0), ("__f_path", 2, 0)]),  // 4
                (KIND_TYPEDEF, "path_t", 2, &[]),                               // 5
                (
                    KIND_STRUCT,
                    "file",
                    48,
                    &[
                        ("f_count", 1, 0),
                        ("", 4, 128),
                        ("f_inode", 1, 256),
                        ("p", 5, 320),
                    ],
                ), // 6
                (KIND_STRUCT, "file", 0, &[]), // 7: a later duplicate must not win
            ],
            kind_flag,
        );
        Btf::parse(&data).unwrap()
    }

    #[test]
    fn finds_direct_nested_and_anonymous_members() {
        for kind_flag in [false, true] {
            let btf = sample(kind_flag);
            assert_eq!(btf.offset("file", "f_inode"), Some(32));
            assert_eq!(btf.offset("file", "f_path"), Some(16));
            assert_eq!(btf.offset("file", "f_path.dentry"), Some(24));
            assert_eq!(btf.offset("file", "p.dentry"), Some(48));
            assert_eq!(btf.offset("path", "dentry"), Some(8));
            assert_eq!(btf.offset("file", "f_nope"), None);
            assert_eq!(btf.offset("nope", "f_inode"), None);
        }
    }

    #[test]
    fn refuses_garbage() {
        assert!(Btf::parse(b"\x00\x01garbage").is_err());
        let mut data = blob(&[(KIND_INT, "long", 8, &[])], false);
        data.truncate(30);
        assert!(Btf::parse(&data).is_err());
    }

    /// The running kernel's BTF (every kernel memmon supports has it):
    /// offsets must be found, and agree with what the layout of
    /// `struct path` (two pointers) implies.
    #[test]
    fn reads_this_kernels_layout() {
        let layout = read_kernel_layout().unwrap();
        assert_eq!(layout.valid, 1);
        assert_eq!(layout.file_vfsmount + 8, layout.file_dentry);
        assert_eq!(layout.task_pid + 4, layout.task_tgid);
        let btf = Btf::parse(&std::fs::read(VMLINUX_BTF).unwrap()).unwrap();
        assert_eq!(btf.offset("path", "mnt"), Some(0));
        assert_eq!(btf.offset("qstr", "name"), Some(8));
    }
}
