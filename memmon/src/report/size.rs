//! Sizes as people read them, shared by the table and the picture.

use bytesize::ByteSize;

/// Binary units, exact when they divide evenly: `132 KiB`, `127 TiB`, `1.5 MiB`.
pub fn human_size(bytes: u64) -> String {
    let text = ByteSize::b(bytes).display().iec().to_string();
    text.replace(".0 ", " ")
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_are_exact_binary_units() {
        assert_eq!(human_size(135_168), "132 KiB");
        assert_eq!(human_size(208_896), "204 KiB");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(127 * (1u64 << 40)), "127 TiB");
        assert_eq!(human_size(12), "12 B");
    }
}
