//! Content hashes, node keys and the file stat cache.
//!
//! A node's **key** names its artifact in the cache. It is blake3 over:
//!
//! | hashed into the key                               | not hashed (metadata)                    |
//! |---------------------------------------------------|------------------------------------------|
//! | kind name and kind implementation version         | node name, declaration position          |
//! | params marked hashed in the kind's schema, after  | params marked `metadata()` (log interval,|
//! | canonicalisation (sorted keys, `1e3` == `1000`)   | worker counts), YAML layout and comments |
//! | each input reference and its artifacts' *digests* | `resources:` (slots do not change output)|
//! | content digests of declared project files         | file mtimes, paths of the cache          |
//!
//! Inputs enter by artifact digest, not by key: a node rebuilt with an
//! identical output leaves its dependents' keys unchanged (early cut-off).
//!
//! Files are hashed by content; [`StatCache`] remembers (size, mtime, inode)
//! → digest so an unchanged tree costs one `stat` per file. Like git, an entry
//! whose mtime is too recent to be trusted ("racily clean") is not stored.

mod canonical;
mod files;
mod statcache;

use std::fmt;

pub use canonical::canonical_bytes;
pub use files::{digest_dir, digest_file, expand_globs, FileDigest, GlobError};
pub use statcache::StatCache;

use crate::settings::Value;

/// Maps `f` over `items`, on two scoped threads when there are at least
/// `threshold` of them. For syscall-bound batches (`stat`, directory walks)
/// on the no-op path: a rayon pool, called once per node, spent more time
/// waking and spinning than it saved.
pub(crate) fn map_halves<T: Sync, R: Send>(items: &[T], threshold: usize, f: impl Fn(&[T]) -> Vec<R> + Sync) -> Vec<R> {
    if items.len() < threshold {
        return f(items);
    }
    let (a, b) = items.split_at(items.len() / 2);
    std::thread::scope(|s| {
        let second = s.spawn(|| f(b));
        let mut first = f(a);
        first.extend(second.join().expect("worker thread panicked"));
        first
    })
}

/// A blake3 digest. Displays as 64 hex digits; `Debug` shows a short prefix.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    /// Full lowercase hex.
    pub fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        blake3::Hash::from_hex(s).ok().map(|h| ContentHash(*h.as_bytes()))
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.short())
    }
}

impl serde::Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> serde::Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ContentHash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// Everything a node key is computed from.
pub struct KeyMaterial<'a> {
    /// Kind name.
    pub kind: &'a str,
    /// Kind implementation version.
    pub version: u32,
    /// The hashed part of the params.
    pub params: &'a Value,
    /// Per input reference: its name and its artifacts' digests in order.
    pub inputs: &'a [(String, Vec<ContentHash>)],
    /// Declared project files (relative path, content digest), sorted by path.
    pub files: &'a [(String, ContentHash)],
}

/// Bumped if the key layout itself changes (invalidates every cache entry).
const KEY_FORMAT: &[u8] = b"scalemake-node-key-v1\0";

impl KeyMaterial<'_> {
    /// The node key.
    pub fn key(&self) -> ContentHash {
        let mut h = blake3::Hasher::new();
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(KEY_FORMAT);
        canonical_bytes(&Value::Str(self.kind.to_string()), &mut buf);
        buf.extend_from_slice(&self.version.to_le_bytes());
        canonical_bytes(self.params, &mut buf);
        buf.extend_from_slice(&(self.inputs.len() as u64).to_le_bytes());
        for (name, digests) in self.inputs {
            canonical_bytes(&Value::Str(name.clone()), &mut buf);
            buf.extend_from_slice(&(digests.len() as u64).to_le_bytes());
            for d in digests {
                buf.extend_from_slice(&d.0);
            }
        }
        buf.extend_from_slice(&(self.files.len() as u64).to_le_bytes());
        for (path, d) in self.files {
            canonical_bytes(&Value::Str(path.clone()), &mut buf);
            buf.extend_from_slice(&d.0);
        }
        h.update(&buf);
        ContentHash(*h.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_short_debug() {
        let h = ContentHash::of(b"abc");
        assert_eq!(ContentHash::from_hex(&h.hex()), Some(h));
        assert_eq!(format!("{h:?}").len(), 13);
    }

    #[test]
    fn key_depends_on_every_part() {
        let params = Value::Int(1);
        let inputs = vec![("a".to_string(), vec![ContentHash::of(b"x")])];
        let files = vec![("f".to_string(), ContentHash::of(b"y"))];
        let base = KeyMaterial { kind: "command", version: 1, params: &params, inputs: &inputs, files: &files };
        let k = base.key();
        assert_eq!(k, KeyMaterial { ..base }.key());
        let p2 = Value::Int(2);
        assert_ne!(k, KeyMaterial { params: &p2, ..base }.key());
        assert_ne!(k, KeyMaterial { version: 2, ..base }.key());
        assert_ne!(k, KeyMaterial { kind: "other", ..base }.key());
        let i2 = vec![("a".to_string(), vec![ContentHash::of(b"z")])];
        assert_ne!(k, KeyMaterial { inputs: &i2, ..base }.key());
        let f2 = vec![("f".to_string(), ContentHash::of(b"w"))];
        assert_ne!(k, KeyMaterial { files: &f2, ..base }.key());
    }
}
