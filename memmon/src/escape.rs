//! Escaping for human output: comm and paths are chosen by whoever runs a
//! process, so printed raw they could move root's cursor, retitle the
//! terminal or hide text (`\e]...`, bidi overrides). JSON output needs none
//! of this; serde escapes control characters itself.
//!
//! The scheme (README, "Output"): a backslash is doubled (`\\`); C0
//! controls and DEL are `\xNN` (ESC is `\x1b`, newline `\x0a`); C1
//! controls and the Unicode bidi controls are `\u{NNNN}`. Everything else,
//! including other non-ASCII text, is printed as is, so the result is
//! readable and no two inputs print the same.

use std::borrow::Cow;

/// Unicode's directional formatting characters (UAX #9), which reorder
/// what follows them on screen.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control() || is_bidi_control(c)
}

/// `text` made safe to print on a terminal; borrowed when nothing needed
/// escaping (the usual case), so a 20k-row table costs no extra copies.
pub fn escape(text: &str) -> Cow<'_, str> {
    let Some(first) = text.find(needs_escape) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x80 && needs_escape(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in [
            "bash",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "[heap]",
            "café ü",
            "",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }

    #[test]
    fn terminal_escapes_in_comm_and_paths_are_made_visible() {
        // A comm that would clear the screen and one that sets the title.
        assert_eq!(escape("\x1b[2Jevil"), "\\x1b[2Jevil");
        assert_eq!(
            escape("/tmp/\x1b]0;pwned\x07lib.so (deleted)"),
            "/tmp/\\x1b]0;pwned\\x07lib.so (deleted)"
        );
        assert_eq!(
            escape("a\nb\rc\td\0e\x7f"),
            "a\\x0ab\\x0dc\\x09d\\x00e\\x7f"
        );
        // C1 CSI and a right-to-left override.
        assert_eq!(escape("x\u{9b}2Jy"), "x\\u{009b}2Jy");
        assert_eq!(escape("evil\u{202e}os.so"), "evil\\u{202e}os.so");
    }

    #[test]
    fn escaping_is_unambiguous() {
        // A literal backslash sequence cannot pass for an escaped control.
        assert_eq!(escape("\\x1b"), "\\\\x1b");
        assert_ne!(escape("\\x1b"), escape("\x1b"));
        let out = escape("a\\\x1b");
        assert_eq!(out, "a\\\\\\x1b");
        assert!(!out.chars().any(|c| c.is_control()));
    }
}
