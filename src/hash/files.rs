//! Hashing files and directories, and expanding declared file globs.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use globset::Glob;
use walkdir::WalkDir;

use super::ContentHash;

/// Above this size a file is hashed from a memory map on all cores, as b3sum does.
const MMAP_THRESHOLD: u64 = 4 << 20;

/// The blake3 digest of a file's content.
pub fn digest_file(path: &Path) -> io::Result<ContentHash> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut hasher = blake3::Hasher::new();
    if len >= MMAP_THRESHOLD {
        hasher.update_mmap_rayon(path)?;
    } else {
        let mut buf = vec![0u8; len.clamp(1, 64 << 10) as usize];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(ContentHash(*hasher.finalize().as_bytes()))
}

/// One file of a hashed directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileDigest {
    /// Path relative to the directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Content digest (of the link target text for a symlink).
    pub digest: ContentHash,
}

/// Digest of a directory tree: names, executable bits and contents of every
/// file, in sorted order; plus the per-file list (for manifests and verify).
pub fn digest_dir(dir: &Path) -> io::Result<(ContentHash, Vec<FileDigest>)> {
    let mut files = Vec::new();
    let mut tree = blake3::Hasher::new();
    tree.update(b"scalemake-tree-v1\0");
    for entry in WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(io::Error::other)?;
        let rel = entry.path().strip_prefix(dir).map_err(io::Error::other)?;
        let rel = rel.to_string_lossy().replace('\\', "/");
        let ft = entry.file_type();
        let (tag, size, digest) = if ft.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            (b'l', 0, ContentHash::of(target.as_os_str().as_encoded_bytes()))
        } else if ft.is_dir() {
            tree.update(b"d");
            tree.update(&(rel.len() as u64).to_le_bytes());
            tree.update(rel.as_bytes());
            continue;
        } else {
            let meta = entry.metadata().map_err(io::Error::other)?;
            let exec = meta.permissions().mode() & 0o111 != 0;
            (if exec { b'x' } else { b'f' }, meta.len(), digest_file(entry.path())?)
        };
        tree.update(&[tag]);
        tree.update(&(rel.len() as u64).to_le_bytes());
        tree.update(rel.as_bytes());
        tree.update(&digest.0);
        files.push(FileDigest { path: rel, size, digest });
    }
    Ok((ContentHash(*tree.finalize().as_bytes()), files))
}

/// A declared file pattern that cannot be honoured.
#[derive(Debug, thiserror::Error)]
pub enum GlobError {
    /// Not a valid glob.
    #[error("invalid pattern `{pattern}`: {message}")]
    Invalid {
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
    /// Matches nothing (a literal path that does not exist, or an empty glob).
    #[error("`{pattern}` matches no file under {root}")]
    NoMatch {
        /// The pattern.
        pattern: String,
        /// Where it was looked for.
        root: PathBuf,
    },
    /// Walking the directory failed.
    #[error("reading {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// A compiled glob. `glob::Pattern` compiles in microseconds without a
/// regex; `globset` builds a regex DFA (~0.1 ms per pattern, which dominated
/// a no-op `status` of 1,000 nodes) and is used only for what `glob` lacks:
/// `{a,b}` alternatives.
enum Matcher {
    Simple(glob::Pattern),
    Alternatives(globset::GlobMatcher),
}

impl Matcher {
    fn new(pattern: &str) -> Result<Self, GlobError> {
        let invalid = |message: String| GlobError::Invalid { pattern: pattern.to_string(), message };
        if pattern.contains('{') {
            let glob = Glob::new(pattern).map_err(|e| invalid(e.kind().to_string()))?;
            Ok(Matcher::Alternatives(glob.compile_matcher()))
        } else {
            glob::Pattern::new(pattern).map(Matcher::Simple).map_err(|e| invalid(e.msg.to_string()))
        }
    }

    fn is_match(&self, rel: &str) -> bool {
        const OPTIONS: glob::MatchOptions = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        match self {
            Matcher::Simple(p) => p.matches_with(rel, OPTIONS),
            Matcher::Alternatives(m) => m.is_match(rel),
        }
    }
}

/// Expands paths and globs (relative to `root`) into sorted, de-duplicated
/// relative file paths. A directory stands for every file under it. Each
/// pattern must match at least one file: a silent empty match would make a
/// typo invisible to caching.
pub fn expand_globs(root: &Path, patterns: &[String]) -> Result<Vec<String>, GlobError> {
    let mut out = Vec::new();
    for pattern in patterns {
        let before = out.len();
        if !is_glob(pattern) {
            let full = root.join(pattern);
            match std::fs::metadata(&full) {
                Ok(m) if m.is_dir() => walk(root, &full, &mut |rel| out.push(rel))?,
                Ok(_) => out.push(normalise(pattern)),
                Err(_) => {}
            }
        } else {
            let matcher = Matcher::new(pattern)?;
            // Walk only below the literal prefix of the pattern.
            let base: PathBuf =
                Path::new(pattern).components().take_while(|c| !is_glob(&c.as_os_str().to_string_lossy())).collect();
            let start = root.join(&base);
            if start.is_dir() {
                walk(root, &start, &mut |rel| {
                    if matcher.is_match(&rel) {
                        out.push(rel)
                    }
                })?;
            }
        }
        if out.len() == before {
            return Err(GlobError::NoMatch { pattern: pattern.clone(), root: root.to_path_buf() });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn normalise(p: &str) -> String {
    p.trim_start_matches("./").to_string()
}

/// Visits the files under `dir`. Symlinks are followed to files, not into
/// directories (no canonicalisation or loop detection needed, and the file
/// type comes from `readdir`, so a plain file costs no `stat` here).
fn walk(root: &Path, dir: &Path, visit: &mut dyn FnMut(String)) -> Result<(), GlobError> {
    for entry in WalkDir::new(dir) {
        let entry = entry.map_err(|e| GlobError::Io { path: dir.to_path_buf(), source: e.into() })?;
        let ft = entry.file_type();
        let is_file = ft.is_file() || (ft.is_symlink() && entry.path().is_file());
        if is_file {
            if let Ok(rel) = entry.path().strip_prefix(root) {
                visit(rel.to_string_lossy().into_owned());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_expand_sorted_and_require_a_match() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/sub")).unwrap();
        for f in ["src/b.py", "src/a.py", "src/sub/c.py", "src/d.txt"] {
            std::fs::write(dir.path().join(f), f).unwrap();
        }
        let got = expand_globs(dir.path(), &["src/**/*.py".into(), "src/d.txt".into()]).unwrap();
        assert_eq!(got, ["src/a.py", "src/b.py", "src/d.txt", "src/sub/c.py"]);
        assert_eq!(
            expand_globs(dir.path(), &["src/*.py".into()]).unwrap(),
            ["src/a.py", "src/b.py"],
            "`*` stops at `/`"
        );
        assert_eq!(expand_globs(dir.path(), &["src/{a,d}.*".into()]).unwrap(), ["src/a.py", "src/d.txt"]);
        assert_eq!(expand_globs(dir.path(), &["src/sub".into()]).unwrap(), ["src/sub/c.py"]);
        assert!(matches!(expand_globs(dir.path(), &["src/*.rs".into()]), Err(GlobError::NoMatch { .. })));
        assert!(matches!(expand_globs(dir.path(), &["nope.txt".into()]), Err(GlobError::NoMatch { .. })));
    }

    #[test]
    fn dir_digest_sees_names_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "1").unwrap();
        let (d1, files) = digest_dir(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        std::fs::write(dir.path().join("a"), "2").unwrap();
        let (d2, _) = digest_dir(dir.path()).unwrap();
        std::fs::rename(dir.path().join("a"), dir.path().join("b")).unwrap();
        let (d3, _) = digest_dir(dir.path()).unwrap();
        assert!(d1 != d2 && d2 != d3);
    }

    #[test]
    fn big_files_hash_like_small_ones() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(MMAP_THRESHOLD as usize + 12345)).map(|i| (i * 7) as u8).collect();
        std::fs::write(dir.path().join("big"), &data).unwrap();
        assert_eq!(digest_file(&dir.path().join("big")).unwrap(), ContentHash::of(&data));
    }
}
