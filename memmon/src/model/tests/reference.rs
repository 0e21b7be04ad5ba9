//! A deliberately naive page-array model of the same syscalls, written
//! independently of the region code, to check it against.

use crate::model::ops::{
    MAP_ANONYMOUS, MAP_GROWSDOWN, MAP_SHARED, MAP_SHARED_VALIDATE, MAP_STACK, MAP_TYPE,
    MREMAP_DONTUNMAP, MemOp, PROT_READ, PROT_WRITE, SHARED_ANON_PATH, shared_anon_backing,
};
use crate::model::{AddressSpace, Backing, BrkState, PAGE_SIZE, Perms, page_align_up};

pub const BASE: u64 = 0x10_0000;
pub const PAGES: usize = 64;
pub const START_BRK: u64 = BASE + 40 * PAGE_SIZE;

/// What one page looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub perms: Perms,
    pub backing: Backing,
    /// File offset of the page; 0 for anonymous memory.
    pub offset: u64,
    pub map_stack: bool,
    pub grows_down: bool,
}

impl Page {
    /// The same page attributes `n` pages further on.
    fn advanced(&self, n: u64) -> Page {
        let mut page = self.clone();
        if !matches!(page.backing, Backing::Anonymous { .. }) {
            page.offset += n * PAGE_SIZE;
        }
        page
    }
}

#[derive(Clone, Debug)]
pub struct Reference {
    pub pages: Vec<Option<Page>>,
    pub brk: Option<BrkState>,
}

fn idx(addr: u64) -> usize {
    ((addr - BASE) / PAGE_SIZE) as usize
}

fn npages(len: u64) -> usize {
    (page_align_up(len) / PAGE_SIZE) as usize
}

impl Reference {
    pub fn new() -> Self {
        Reference {
            pages: vec![None; PAGES],
            brk: Some(BrkState {
                start_brk: START_BRK,
                brk: START_BRK,
                exact: false,
            }),
        }
    }

    /// The model's view of every page in the window.
    pub fn view_of(space: &AddressSpace) -> Vec<Option<Page>> {
        (0..PAGES as u64)
            .map(|i| BASE + i * PAGE_SIZE)
            .map(|addr| {
                space.region_at(addr).map(|r| Page {
                    perms: r.perms,
                    backing: r.backing.clone(),
                    offset: if matches!(r.backing, Backing::Anonymous { .. }) {
                        0
                    } else {
                        r.offset_at(addr)
                    },
                    map_stack: r.map_stack,
                    grows_down: r.grows_down,
                })
            })
            .collect()
    }

    fn clear(&mut self, from: usize, to: usize) {
        if from >= to {
            return;
        }
        for page in &mut self.pages[from.min(PAGES)..to.min(PAGES)] {
            *page = None;
        }
    }

    pub fn apply(&mut self, op: &MemOp) {
        match op {
            MemOp::Mmap {
                addr,
                len,
                prot,
                flags,
                backing,
                offset,
            } => {
                let shared = matches!(flags & MAP_TYPE, MAP_SHARED | MAP_SHARED_VALIDATE);
                let anon = flags & MAP_ANONYMOUS != 0;
                let backing = match (anon, shared) {
                    (true, true) => shared_anon_backing(),
                    (true, false) => Backing::anonymous(),
                    (false, _) => backing.clone(),
                };
                let first = Page {
                    perms: Perms::from_prot(*prot, shared),
                    offset: if anon { 0 } else { *offset },
                    backing,
                    map_stack: flags & MAP_STACK != 0,
                    grows_down: flags & MAP_GROWSDOWN != 0,
                };
                let a = idx(*addr);
                for i in 0..npages(*len) {
                    self.pages[a + i] = Some(first.advanced(i as u64));
                }
            }
            MemOp::Munmap { addr, len } => self.clear(idx(*addr), idx(*addr) + npages(*len)),
            MemOp::Mprotect { addr, len, prot } => {
                let a = idx(*addr);
                for page in self.pages[a..a + npages(*len)].iter_mut().flatten() {
                    page.perms = Perms::from_prot(*prot, page.perms.shared);
                }
            }
            MemOp::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
            } => self.mremap(
                idx(*old_addr),
                npages(*old_len),
                npages(*new_len),
                *flags,
                idx(*new_addr),
            ),
            MemOp::Brk { brk } => self.brk(*brk),
            MemOp::ShmDetach { addr } => self.shm_detach(idx(*addr)),
            MemOp::SetAnonName { addr, len, name } => {
                let a = idx(*addr);
                for page in self.pages[a..a + npages(*len)].iter_mut().flatten() {
                    rename(page, name.as_deref());
                }
            }
        }
    }

    fn mremap(&mut self, a: usize, ol: usize, nl: usize, flags: u64, b: usize) {
        let tail = self.pages[a + ol - 1].clone();
        if a == b {
            if nl <= ol {
                self.clear(a + nl, a + ol);
            } else if let Some(tail) = tail {
                for j in 0..nl - ol {
                    self.pages[a + ol + j] = Some(tail.advanced(j as u64 + 1));
                }
            }
            return;
        }
        let m = ol.min(nl);
        let src: Vec<Option<Page>> = self.pages[a..a + m].to_vec();
        if src.iter().all(Option::is_none) {
            return;
        }
        self.clear(b, b + nl);
        self.clear(a + m, a + ol);
        if flags & MREMAP_DONTUNMAP == 0 {
            self.clear(a, a + m);
        }
        self.pages[b..b + m].clone_from_slice(&src);
        if nl > ol
            && let Some(tail) = tail
        {
            for j in 0..nl - ol {
                self.pages[b + ol + j] = Some(tail.advanced(j as u64 + 1));
            }
        }
    }

    fn brk(&mut self, brk: u64) {
        let state = self.brk.expect("the reference starts with a break");
        let (old, new) = (idx(page_align_up(state.brk)), idx(page_align_up(brk)));
        let heap = Page {
            perms: Perms::from_prot(PROT_READ | PROT_WRITE, false),
            backing: Backing::anonymous(),
            offset: 0,
            map_stack: false,
            grows_down: false,
        };
        for i in old..new {
            self.pages[i] = Some(heap.clone());
        }
        self.clear(new, old);
        self.brk = Some(BrkState {
            brk,
            exact: true,
            ..state
        });
    }

    /// Like ipc/shm.c: the first SysV page at or above `a` whose offset is
    /// its distance from `a` names the segment; every page of it placed
    /// that way is unmapped.
    fn shm_detach(&mut self, a: usize) {
        let placed = |i: usize, p: &Page| p.offset == (i - a) as u64 * PAGE_SIZE;
        let Some(file) = (a..PAGES).find_map(|i| {
            self.pages[i]
                .as_ref()
                .filter(|p| p.backing.is_sysv_shm() && placed(i, p))
                .map(|p| p.backing.clone())
        }) else {
            return;
        };
        for i in a..PAGES {
            if self.pages[i]
                .as_ref()
                .is_some_and(|p| p.backing == file && placed(i, p))
            {
                self.pages[i] = None;
            }
        }
    }
}

fn rename(page: &mut Page, name: Option<&str>) {
    let shmem = |n: &str| Backing::Special {
        name: format!("[anon_shmem:{n}]"),
    };
    page.backing = match (&page.backing, name) {
        (Backing::Anonymous { .. }, _) => Backing::Anonymous {
            name: name.map(Into::into),
        },
        (Backing::File { path, .. }, Some(n)) if path == SHARED_ANON_PATH => shmem(n),
        (Backing::Special { name: old }, _) if old.starts_with("[anon_shmem:") => match name {
            Some(n) => shmem(n),
            None => shared_anon_backing(),
        },
        (other, _) => other.clone(),
    };
}
