//! Token shards in the llm.c format.
//!
//! A shard is a 1,024-byte header of 256 little-endian `i32` — `[0]` magic
//! 20240520, `[1]` version 1 (tokens are `u16`), `[2]` token count, the rest
//! zero — followed by the tokens as little-endian `u16`. The format is
//! llm.c's, so its tools read our shards and ours read theirs.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// llm.c's magic number for token shards.
pub const MAGIC: i32 = 20240520;
/// Version 1: `u16` tokens.
const VERSION: i32 = 1;
/// Header size in bytes.
pub const HEADER_BYTES: usize = 1024;

/// `meta.json` beside a `shards` node's shards: what a `train` node needs to
/// know of them. Fields in alphabetical order, the order `meta.json` has
/// always had, so artifacts written before this type are byte-identical.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardsMeta {
    /// The end-of-text token id that separates documents.
    pub eot: u16,
    /// "llm.c uint16 shards".
    pub format: String,
    /// The tokenizer's vocabulary size (the model's embedding rows).
    pub vocab_size: u32,
}

impl ShardsMeta {
    /// The format every shard set is written in.
    pub const FORMAT: &'static str = "llm.c uint16 shards";
}

/// Why a shard cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The shard.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Not a shard, or a damaged one.
    #[error("{path}: {problem}")]
    Invalid {
        /// The shard.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Writes one shard file (not atomically: shards are written into a node's
/// staging directory, which is published as a whole).
pub fn write_shard(path: &Path, tokens: &[u16]) -> Result<(), ShardError> {
    let io = |source| ShardError::Io { path: path.to_path_buf(), source };
    let count = i32::try_from(tokens.len()).map_err(|_| ShardError::Invalid {
        path: path.to_path_buf(),
        problem: format!("{} tokens exceed the format's i32 count", tokens.len()),
    })?;
    let mut header = [0i32; 256];
    header[0] = MAGIC;
    header[1] = VERSION;
    header[2] = count;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
    for word in header {
        out.write_all(&word.to_le_bytes()).map_err(io)?;
    }
    for t in tokens {
        out.write_all(&t.to_le_bytes()).map_err(io)?;
    }
    out.flush().map_err(io)
}

/// Checks a shard's bytes (header and length) and returns its token count.
pub fn validate(path: &Path, bytes: &[u8]) -> Result<usize, ShardError> {
    let invalid = |problem: String| ShardError::Invalid { path: path.to_path_buf(), problem };
    if bytes.len() < HEADER_BYTES {
        return Err(invalid(format!(
            "{} bytes is shorter than the 1024-byte shard header (truncated or not a shard)",
            bytes.len()
        )));
    }
    let word = |i: usize| i32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    if word(0) != MAGIC {
        return Err(invalid(format!("bad magic {} (expected {MAGIC}): not an llm.c token shard", word(0))));
    }
    if word(1) != VERSION {
        return Err(invalid(format!("unsupported shard version {} (expected {VERSION}: u16 tokens)", word(1))));
    }
    let count = usize::try_from(word(2)).map_err(|_| invalid(format!("negative token count {}", word(2))))?;
    let expected = HEADER_BYTES + 2 * count;
    if bytes.len() != expected {
        return Err(invalid(format!(
            "header says {count} tokens ({expected} bytes) but the file has {} bytes (truncated?)",
            bytes.len()
        )));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.bin");
        write_shard(&path, &[1, 2, 65535]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), HEADER_BYTES + 6);
        assert_eq!(validate(&path, &bytes).unwrap(), 3);
        assert_eq!(&bytes[HEADER_BYTES..], &[1, 0, 2, 0, 255, 255]);
        let err = validate(&path, &bytes[..bytes.len() - 1]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        let mut foreign = bytes.clone();
        foreign[0] = 0;
        assert!(validate(&path, &foreign).unwrap_err().to_string().contains("bad magic"));
        assert!(validate(&path, &bytes[..100]).unwrap_err().to_string().contains("shorter than"));
    }
}
