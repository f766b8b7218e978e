//! Token shards in the llm.c format.
//!
//! A shard is a 1,024-byte header of 256 little-endian `i32` — `[0]` magic
//! 20240520, `[1]` version, `[2]` token count, the rest zero — followed by
//! the tokens, little-endian. Version 1 is llm.c's: `u16` tokens, so its
//! tools read our shards and ours read theirs. Version 2 is ours, for
//! vocabularies past 65,536 (cl100k, o200k): the same header and `u32`
//! tokens.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// llm.c's magic number for token shards.
pub const MAGIC: i32 = 20240520;
/// Header size in bytes.
pub const HEADER_BYTES: usize = 1024;

/// How wide a shard's tokens are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenWidth {
    /// `u16`, header version 1 (llm.c's).
    U16,
    /// `u32`, header version 2.
    U32,
}

impl TokenWidth {
    /// The narrowest width that holds ids below `vocab_size`.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= 1 << 16 {
            TokenWidth::U16
        } else {
            TokenWidth::U32
        }
    }

    /// Bytes per token.
    pub fn bytes(self) -> usize {
        match self {
            TokenWidth::U16 => 2,
            TokenWidth::U32 => 4,
        }
    }

    fn version(self) -> i32 {
        match self {
            TokenWidth::U16 => 1,
            TokenWidth::U32 => 2,
        }
    }
}

/// `meta.json` beside a `shards` node's shards: what a `train` node needs to
/// know of them. Fields in alphabetical order, the order `meta.json` has
/// always had, so artifacts written before this type are byte-identical.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardsMeta {
    /// The end-of-text token id that separates documents.
    pub eot: u32,
    /// [`ShardsMeta::FORMAT`] or [`ShardsMeta::FORMAT_U32`].
    pub format: String,
    /// The tokenizer's vocabulary size (the model's embedding rows).
    pub vocab_size: u32,
}

impl ShardsMeta {
    /// Shards of `u16` tokens.
    pub const FORMAT: &'static str = "llm.c uint16 shards";
    /// Shards of `u32` tokens.
    pub const FORMAT_U32: &'static str = "llm.c header, uint32 tokens (version 2)";

    /// The format string of shards of `width`.
    pub fn format_of(width: TokenWidth) -> &'static str {
        match width {
            TokenWidth::U16 => Self::FORMAT,
            TokenWidth::U32 => Self::FORMAT_U32,
        }
    }
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

/// Writes one shard as its tokens come (not atomically: shards are written
/// into a node's staging directory, which is published as a whole). The
/// count in the header is filled in by [`ShardFile::finish`].
pub struct ShardFile {
    path: PathBuf,
    out: BufWriter<File>,
    width: TokenWidth,
    count: u64,
    /// The little-endian bytes of the tokens being written (reused).
    scratch: Vec<u8>,
}

impl ShardFile {
    /// Creates `path` with a header still to be completed.
    pub fn create(path: &Path, width: TokenWidth) -> Result<Self, ShardError> {
        let io = |source| ShardError::Io { path: path.to_path_buf(), source };
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
        out.write_all(&[0u8; HEADER_BYTES]).map_err(io)?;
        Ok(ShardFile { path: path.to_path_buf(), out, width, count: 0, scratch: Vec::new() })
    }

    /// Tokens written so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True before the first token.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends tokens (each below the width's limit: the caller checked the vocabulary).
    pub fn write(&mut self, tokens: &[u32]) -> Result<(), ShardError> {
        let bytes = &mut self.scratch;
        bytes.clear();
        match self.width {
            TokenWidth::U16 => tokens.iter().for_each(|&t| bytes.extend_from_slice(&(t as u16).to_le_bytes())),
            TokenWidth::U32 => tokens.iter().for_each(|&t| bytes.extend_from_slice(&t.to_le_bytes())),
        }
        self.out.write_all(bytes).map_err(|source| ShardError::Io { path: self.path.clone(), source })?;
        self.count += tokens.len() as u64;
        Ok(())
    }

    /// Writes the header and closes the file; returns its token count.
    pub fn finish(self) -> Result<u64, ShardError> {
        let ShardFile { path, out, width, count, .. } = self;
        let io = |source| ShardError::Io { path: path.clone(), source };
        let count32 = i32::try_from(count).map_err(|_| ShardError::Invalid {
            path: path.clone(),
            problem: format!("{count} tokens exceed the format's i32 count"),
        })?;
        let mut file = out.into_inner().map_err(|e| io(e.into_error()))?;
        let mut header = [0u8; HEADER_BYTES];
        for (i, word) in [MAGIC, width.version(), count32].into_iter().enumerate() {
            header[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
        }
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&header).map_err(io)?;
        Ok(count)
    }
}

/// Writes one whole shard of `u16` tokens.
pub fn write_shard(path: &Path, tokens: &[u16]) -> Result<(), ShardError> {
    let mut shard = ShardFile::create(path, TokenWidth::U16)?;
    let wide: Vec<u32> = tokens.iter().map(|&t| u32::from(t)).collect();
    shard.write(&wide)?;
    shard.finish().map(|_| ())
}

/// Checks a shard's bytes (header and length) and returns its token count
/// and width.
pub fn validate(path: &Path, bytes: &[u8]) -> Result<(usize, TokenWidth), ShardError> {
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
    let width = match word(1) {
        1 => TokenWidth::U16,
        2 => TokenWidth::U32,
        v => return Err(invalid(format!("unsupported shard version {v} (1: u16 tokens, 2: u32 tokens)"))),
    };
    let count = usize::try_from(word(2)).map_err(|_| invalid(format!("negative token count {}", word(2))))?;
    let expected = HEADER_BYTES + width.bytes() * count;
    if bytes.len() != expected {
        return Err(invalid(format!(
            "header says {count} tokens ({expected} bytes) but the file has {} bytes (truncated?)",
            bytes.len()
        )));
    }
    Ok((count, width))
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
        assert_eq!(validate(&path, &bytes).unwrap(), (3, TokenWidth::U16));
        assert_eq!(&bytes[HEADER_BYTES..], &[1, 0, 2, 0, 255, 255]);
        let err = validate(&path, &bytes[..bytes.len() - 1]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        let mut foreign = bytes.clone();
        foreign[0] = 0;
        assert!(validate(&path, &foreign).unwrap_err().to_string().contains("bad magic"));
        assert!(validate(&path, &bytes[..100]).unwrap_err().to_string().contains("shorter than"));
    }

    #[test]
    fn wide_shards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        let mut shard = ShardFile::create(&path, TokenWidth::for_vocab(200_019)).unwrap();
        shard.write(&[1, 70_000]).unwrap();
        shard.write(&[199_998]).unwrap();
        assert_eq!(shard.finish().unwrap(), 3);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(validate(&path, &bytes).unwrap(), (3, TokenWidth::U32));
        assert_eq!(&bytes[HEADER_BYTES + 4..HEADER_BYTES + 8], &70_000u32.to_le_bytes());
        assert_eq!(TokenWidth::for_vocab(65_536), TokenWidth::U16);
    }
}
