//! One colour per kind, for the terminal (ANSI) and the SVG (RGB), so the
//! two pictures and their legends agree.

use crate::classify::RegionKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Colour {
    /// SGR foreground code (30-37, 90-97).
    pub ansi: u8,
    pub rgb: &'static str,
}

pub fn colour(kind: RegionKind) -> Colour {
    use RegionKind::*;
    let (ansi, rgb) = match kind {
        Text => (32, "#3a9d23"),
        Rodata => (36, "#5fb7c9"),
        Data => (34, "#3d6fd1"),
        Bss => (94, "#8fa8f0"),
        Heap => (33, "#e0a800"),
        MmapChunk => (93, "#f2d45c"),
        Arena => (91, "#e8743b"),
        ThreadStack => (35, "#b04fc4"),
        Guard => (31, "#d62728"),
        Stack => (95, "#e377c2"),
        Vdso | Vvar | Vsyscall => (96, "#17becf"),
        File => (37, "#a0a0a0"),
        Shm => (92, "#9bd37a"),
        Anon => (90, "#707070"),
    };
    Colour { ansi, rgb }
}

/// Gaps and collapsed runs, which have no single kind.
pub const GAP_RGB: &str = "#f3f3f3";
pub const RUN_RGB: &str = "#c8c8c8";
