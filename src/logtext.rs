//! Outside values made safe for a log line.
//!
//! A log line is one line: whatever reads the log (a terminal, journald, a
//! collector splitting on line breaks, an operator's `grep`) takes a line
//! break inside a value as the start of a new line, and a bidi control as
//! an order in which to show the text. A value from outside the node — an
//! etcd key or record, an address, a system id, a URL, an error built from
//! any of these — may carry them, so every such value goes into a log line
//! through [`esc`]:
//!
//! ```ignore
//! tracing::warn!(system = %esc(id), error = %esc(&e), "…");
//! ```
//!
//! [`Esc`] formats its value with each control character written as an
//! escape: `\n`, `\r`, `\t`, `\\` for a backslash (so an escape in the output
//! always means one), `\u{…}` for the others — every C0 and C1 control
//! (U+0085 NEL included) and DEL, the line and paragraph separators
//! U+2028/U+2029, and the bidi controls (U+061C, U+200E/U+200F,
//! U+202A–U+202E, U+2066–U+2069). Everything else is written as it is. It
//! streams through the formatter: nothing is allocated.

use std::fmt::{self, Display, Write};

/// A value written with its control characters escaped (see the module).
#[derive(Clone, Copy)]
pub struct Esc<T>(pub T);

/// `value`, to be formatted into a log line with its control characters
/// escaped.
pub fn esc<T: Display>(value: T) -> Esc<T> {
    Esc(value)
}

impl<T: Display> Display for Esc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Escaping(f), "{}", self.0)
    }
}

impl<T: Display> fmt::Debug for Esc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Display::fmt(self, f)
    }
}

/// Whether `c` is written as an escape.
pub fn needs_escape(c: char) -> bool {
    matches!(c,
        '\\'
        | '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{061c}'
        | '\u{200e}' | '\u{200f}'
        | '\u{2028}' | '\u{2029}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// A writer that escapes what passes through it into `f`.
struct Escaping<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            if !needs_escape(c) {
                continue;
            }
            self.0.write_str(&s[plain..i])?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                '\\' => self.0.write_str("\\\\")?,
                c => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
            }
            plain = i + c.len_utf8();
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_controls_are_escaped() {
        let forged = "127.0.0.1:1\n2026-01-01T00:00:00Z ERROR forged\r\x1b[2J";
        assert_eq!(
            esc(forged).to_string(),
            "127.0.0.1:1\\n2026-01-01T00:00:00Z ERROR forged\\r\\u{1b}[2J"
        );
        assert_eq!(esc("a\tb\\n\0\x7f").to_string(), "a\\tb\\\\n\\u{0}\\u{7f}");
    }

    #[test]
    fn unicode_line_separators_and_bidi_controls_are_escaped() {
        for (c, escaped) in [
            ('\u{85}', "\\u{85}"),
            ('\u{9f}', "\\u{9f}"),
            ('\u{2028}', "\\u{2028}"),
            ('\u{2029}', "\\u{2029}"),
            ('\u{202e}', "\\u{202e}"),
            ('\u{202a}', "\\u{202a}"),
            ('\u{2066}', "\\u{2066}"),
            ('\u{2069}', "\\u{2069}"),
            ('\u{200f}', "\\u{200f}"),
            ('\u{61c}', "\\u{61c}"),
        ] {
            assert_eq!(esc(format!("x{c}y")).to_string(), format!("x{escaped}y"));
        }
    }

    #[test]
    fn everything_else_is_written_as_it_is() {
        for s in [
            "",
            "sys-a",
            "10.0.0.1:7900",
            "[::1]:7900",
            "系统ID",
            "é ü ß 🙂",
        ] {
            assert_eq!(esc(s).to_string(), s);
        }
        // The output never holds a character that needs escaping, except the
        // backslashes of the escapes.
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let out = esc(&all).to_string();
        assert!(out.chars().all(|c| c == '\\' || !needs_escape(c)));
        assert!(!out.contains('\n') && !out.contains('\u{2028}'));
    }

    #[test]
    fn any_display_value_is_escaped() {
        let err = std::io::Error::other("bad\nline");
        assert_eq!(esc(&err).to_string(), "bad\\nline");
        assert_eq!(esc(42).to_string(), "42");
        assert_eq!(format!("{:?}", esc("a\nb")), "a\\nb");
    }
}
