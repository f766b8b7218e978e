//! Documents from files: reading, normalisation, de-duplication, splitting.
//!
//! A plain-text file (optionally `.gz`) is one document; a JSONL file holds
//! one document per line in a string field. Normalisation makes equal text
//! equal bytes: Unicode NFC, `\r\n` → `\n`, control characters other than
//! newline and tab removed, trailing spaces trimmed, runs of blank lines
//! collapsed to one. The split is a pure function of the normalised text
//! (its blake3 digest mapped to [0, 1)), so adding or removing other documents
//! never moves a document between train, val and test.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use rayon::prelude::*;
use unicode_normalization::UnicodeNormalization;

/// How to read an input file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// By extension: `.jsonl`/`.jsonl.gz` are JSONL, anything else plain text.
    Auto,
    /// One document per file.
    Text,
    /// One JSON object per line; the document is its `text_field`.
    Jsonl,
}

/// The three splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Training data.
    Train,
    /// Held-out validation data.
    Val,
    /// Held-out test data.
    Test,
}

impl Split {
    /// All splits, in file-name order of the artifact.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// `train`, `val`, `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// Where a document goes, from its normalised text.
fn split_of(text: &str, val: f64, test: f64) -> Split {
    let digest = blake3::hash(text.as_bytes());
    let x = u64::from_le_bytes(digest.as_bytes()[..8].try_into().expect("8 bytes")) as f64 / 2f64.powi(64);
    if x < val {
        Split::Val
    } else if x < val + test {
        Split::Test
    } else {
        Split::Train
    }
}

/// A problem with one input file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct FileProblem {
    /// The file.
    pub path: PathBuf,
    /// What is wrong (with a line number for JSONL).
    pub problem: String,
}

/// Reads the documents of one file (normalised, empty ones dropped).
pub fn read_file(path: &Path, format: Format, text_field: &str) -> Result<Vec<String>, FileProblem> {
    let problem = |problem: String| FileProblem { path: path.to_path_buf(), problem };
    let file = std::fs::File::open(path).map_err(|e| problem(format!("cannot open: {e}")))?;
    let name = path.to_string_lossy();
    let gz = name.ends_with(".gz");
    let mut reader: Box<dyn Read> = if gz { Box::new(GzDecoder::new(file)) } else { Box::new(file) };
    let stem = name.trim_end_matches(".gz");
    let jsonl = match format {
        Format::Auto => stem.ends_with(".jsonl"),
        Format::Text => false,
        Format::Jsonl => true,
    };
    let mut docs = Vec::new();
    if jsonl {
        for (i, line) in BufReader::new(reader).lines().enumerate() {
            let line = line.map_err(|e| problem(format!("line {}: {e}", i + 1)))?;
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| problem(format!("line {}: invalid JSON: {e}", i + 1)))?;
            let text = value
                .get(text_field)
                .and_then(|v| v.as_str())
                .ok_or_else(|| problem(format!("line {}: no string field `{text_field}`", i + 1)))?;
            docs.push(normalize(text));
        }
    } else {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|e| problem(format!("cannot read: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            problem(format!("invalid UTF-8 at byte {at}"))
        })?;
        docs.push(normalize(&text));
    }
    docs.retain(|d| !d.is_empty());
    Ok(docs)
}

/// NFC, `\n` line ends, no control characters but `\n`/`\t`, no trailing
/// spaces, at most one blank line in a row, no leading/trailing blank lines.
fn normalize(text: &str) -> String {
    let nfc: String = text.replace("\r\n", "\n").nfc().filter(|&c| c == '\n' || c == '\t' || !c.is_control()).collect();
    let mut out = String::with_capacity(nfc.len());
    let mut blank_run = 0;
    for line in nfc.lines() {
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

/// The result of reading a set of files.
#[derive(Debug, Default)]
pub struct Documents {
    /// Unique documents in file order, with their split.
    pub docs: Vec<(Split, String)>,
    /// Exact duplicates dropped.
    pub duplicates: usize,
    /// Files skipped with `on_error: skip`, and why.
    pub skipped: Vec<FileProblem>,
}

/// Reads `files` in parallel, keeping file order; drops exact duplicates
/// (first occurrence wins) and assigns splits. With `skip_bad`, unreadable
/// files are counted instead of failing the whole read.
pub fn read_all(
    files: &[PathBuf],
    format: Format,
    text_field: &str,
    skip_bad: bool,
    val: f64,
    test: f64,
) -> Result<Documents, FileProblem> {
    let per_file: Vec<Result<Vec<String>, FileProblem>> =
        files.par_iter().map(|f| read_file(f, format, text_field)).collect();
    let mut out = Documents::default();
    let mut seen = HashSet::new();
    for result in per_file {
        match result {
            Ok(docs) => {
                for doc in docs {
                    if seen.insert(*blake3::hash(doc.as_bytes()).as_bytes()) {
                        out.docs.push((split_of(&doc, val, test), doc));
                    } else {
                        out.duplicates += 1;
                    }
                }
            }
            Err(p) if skip_bad => out.skipped.push(p),
            Err(p) => return Err(p),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalize("e\u{301}te\u{301}\r\n\r\n\r\n\nfin  \u{7}\n\n"), "été\n\nfin");
        assert_eq!(normalize("a\tb\n c"), "a\tb\n c");
        assert_eq!(normalize("\n\n  \n"), "");
    }

    #[test]
    fn splits_are_stable_and_roughly_proportional() {
        let docs: Vec<String> = (0..20_000).map(|i| format!("document {i}")).collect();
        let val = docs.iter().filter(|d| split_of(d, 0.1, 0.05) == Split::Val).count();
        let test = docs.iter().filter(|d| split_of(d, 0.1, 0.05) == Split::Test).count();
        assert!((1800..2200).contains(&val), "{val}");
        assert!((800..1200).contains(&test), "{test}");
        assert_eq!(split_of("x", 0.1, 0.05), split_of("x", 0.1, 0.05));
    }

    #[test]
    fn reads_text_gz_and_jsonl_and_dedups() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "Bonjour « monde » l’été\n").unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(dir.path().join("b.txt.gz")).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all("Bonjour « monde » l’été".as_bytes()).unwrap();
        gz.finish().unwrap();
        std::fs::write(dir.path().join("c.jsonl"), "{\"text\": \"un\"}\n\n{\"text\": \"deux\", \"id\": 2}\n").unwrap();
        let files: Vec<PathBuf> = ["a.txt", "b.txt.gz", "c.jsonl"].iter().map(|f| dir.path().join(f)).collect();
        let docs = read_all(&files, Format::Auto, "text", false, 0.0, 0.0).unwrap();
        let texts: Vec<&str> = docs.docs.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["Bonjour « monde » l’été", "un", "deux"]);
        assert_eq!(docs.duplicates, 1);
    }

    #[test]
    fn bad_files_name_themselves_or_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.txt"), b"ok\xffno").unwrap();
        std::fs::write(dir.path().join("bad.jsonl"), "{\"body\": 1}\n").unwrap();
        std::fs::write(dir.path().join("good.txt"), "fine").unwrap();
        let bad = dir.path().join("bad.txt");
        let err = read_all(std::slice::from_ref(&bad), Format::Auto, "text", false, 0.0, 0.0).unwrap_err();
        assert_eq!(err.to_string(), format!("{}: invalid UTF-8 at byte 2", bad.display()));
        let err = read_all(&[dir.path().join("bad.jsonl")], Format::Auto, "text", false, 0.0, 0.0).unwrap_err();
        assert!(err.to_string().ends_with("line 1: no string field `text`"), "{err}");
        let files: Vec<PathBuf> = ["bad.txt", "bad.jsonl", "good.txt"].iter().map(|f| dir.path().join(f)).collect();
        let docs = read_all(&files, Format::Auto, "text", true, 0.0, 0.0).unwrap();
        assert_eq!((docs.docs.len(), docs.skipped.len()), (1, 2));
    }
}
