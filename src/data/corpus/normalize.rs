//! Normalisation: equal text becomes equal bytes, so exact de-duplication
//! and the hash-based split see through encoding noise.

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// NFC, `\n` line ends, no control characters but `\n`/`\t`, no trailing
/// spaces, at most one blank line in a row, no leading/trailing blank lines.
///
/// Most text is already NFC and free of control characters: a quick check
/// skips the character-by-character rewrite for it (the corpus is normalised
/// twice, once to split it and once to encode it, so this is on the hot path).
pub fn normalize(text: &str) -> String {
    let clean = !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
        && is_nfc_quick(text.chars()) == IsNormalized::Yes;
    let rewritten: String;
    let text = if clean {
        text
    } else {
        rewritten = text.replace("\r\n", "\n").nfc().filter(|&c| c == '\n' || c == '\t' || !c.is_control()).collect();
        &rewritten
    };
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalize("e\u{301}te\u{301}\r\n\r\n\r\n\nfin  \u{7}\n\n"), "été\n\nfin");
        assert_eq!(normalize("a\tb\n c"), "a\tb\n c");
        assert_eq!(normalize("\n\n  \n"), "");
        assert_eq!(normalize("déjà\u{85}vu\r"), "déjàvu");
        assert_eq!(normalize("clean text\n\n\n\nstays"), "clean text\n\nstays");
    }
}
