//! The few styles human output uses, written with anstyle rather than
//! escape codes by hand; `color` is decided once (`NO_COLOR`, a terminal).

use anstyle::{AnsiColor, Style};

pub const BOLD: Style = Style::new().bold();
pub const DIM: Style = Style::new().dimmed();
pub const RED: Style = AnsiColor::Red.on_default();
pub const GREEN: Style = AnsiColor::Green.on_default();
pub const YELLOW: Style = AnsiColor::Yellow.on_default();
pub const CYAN: Style = AnsiColor::Cyan.on_default();
pub const ERROR: Style = AnsiColor::Red.on_default().bold();
pub const WARNING: Style = AnsiColor::Yellow.on_default().bold();

/// `text` in `style` when `color`, else as it is.
pub fn paint(style: Style, text: &str, color: bool) -> String {
    if color {
        format!("{style}{text}{style:#}")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_are_written_only_with_color() {
        assert_eq!(paint(ERROR, "error", false), "error");
        assert_eq!(paint(ERROR, "error", true), "\x1b[1m\x1b[31merror\x1b[0m");
        assert_eq!(paint(GREEN, "ok", true), "\x1b[32mok\x1b[0m");
    }
}
