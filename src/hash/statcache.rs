//! (path, size, mtime, inode) → content digest, persisted between runs.
//!
//! Stored as a small binary file rather than JSON: loading it is on the path
//! of every no-op `status`, and 10,000 entries parse in well under a
//! millisecond this way. Any damage to the file just empties the cache.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use super::{digest_file, ContentHash};

const MAGIC: &[u8; 8] = b"SMSTAT01";
/// A file modified this recently might change again within the same mtime
/// tick without the stat changing, so its digest is not remembered.
const RACY_NANOS: i128 = 2_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    ino: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Stamp { size: meta.len(), mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128, ino: meta.ino() }
    }
}

/// The persistent stat cache of one project.
pub struct StatCache {
    file: PathBuf,
    entries: HashMap<PathBuf, (Stamp, ContentHash)>,
    dirty: bool,
}

impl StatCache {
    /// Loads the cache stored at `file` (empty if missing or damaged).
    pub fn load(file: &Path) -> Self {
        let entries = std::fs::read(file).ok().and_then(|b| decode(&b)).unwrap_or_default();
        StatCache { file: file.to_path_buf(), entries, dirty: false }
    }

    /// Digests of `paths` (absolute), hashing only files whose stat changed;
    /// misses are hashed in parallel.
    pub fn digest_all(&mut self, paths: &[PathBuf]) -> Vec<io::Result<ContentHash>> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        let entries = &self.entries;
        let results: Vec<(io::Result<ContentHash>, Option<Stamp>)> = paths
            .par_iter()
            .map(|p| {
                let meta = match std::fs::metadata(p) {
                    Ok(m) => m,
                    Err(e) => return (Err(e), None),
                };
                let stamp = Stamp::of(&meta);
                match entries.get(p) {
                    Some((s, d)) if *s == stamp => (Ok(*d), None),
                    _ => {
                        let digest = digest_file(p);
                        let fresh = (digest.is_ok() && now - stamp.mtime_ns > RACY_NANOS).then_some(stamp);
                        (digest, fresh)
                    }
                }
            })
            .collect();
        results
            .into_iter()
            .zip(paths)
            .map(|((digest, stamp), path)| {
                if let (Ok(d), Some(s)) = (&digest, stamp) {
                    self.entries.insert(path.clone(), (s, *d));
                    self.dirty = true;
                }
                digest
            })
            .collect()
    }

    /// Writes the cache back if it changed (atomically: temp file + rename).
    pub fn save(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.file.with_extension(format!("tmp{}", std::process::id()));
        let mut f = io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(MAGIC)?;
        for (path, (stamp, digest)) in &self.entries {
            let p = path.as_os_str().as_encoded_bytes();
            f.write_all(&(p.len() as u32).to_le_bytes())?;
            f.write_all(p)?;
            f.write_all(&stamp.size.to_le_bytes())?;
            f.write_all(&stamp.mtime_ns.to_le_bytes())?;
            f.write_all(&stamp.ino.to_le_bytes())?;
            f.write_all(&digest.0)?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &self.file)?;
        self.dirty = false;
        Ok(())
    }
}

fn decode(bytes: &[u8]) -> Option<HashMap<PathBuf, (Stamp, ContentHash)>> {
    let mut rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let mut out = HashMap::new();
    while let Some(len) = take(4) {
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(take(len)?));
        let size = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let mtime_ns = i128::from_le_bytes(take(16)?.try_into().ok()?);
        let ino = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let digest = ContentHash(take(32)?.try_into().ok()?);
        out.insert(path, (Stamp { size, mtime_ns, ino }, digest));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, "hello").unwrap();
        // Make the file old enough to be cached.
        let old = std::fs::File::options().write(true).open(&f).unwrap();
        old.set_modified(SystemTime::now() - std::time::Duration::from_secs(60)).unwrap();
        let store = dir.path().join("stat");
        let mut cache = StatCache::load(&store);
        let d1 = cache.digest_all(std::slice::from_ref(&f)).remove(0).unwrap();
        cache.save().unwrap();
        let mut cache = StatCache::load(&store);
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.digest_all(std::slice::from_ref(&f)).remove(0).unwrap(), d1);
        std::fs::write(&f, "world").unwrap();
        assert_ne!(cache.digest_all(std::slice::from_ref(&f)).remove(0).unwrap(), d1);
    }

    #[test]
    fn damaged_file_means_empty_cache() {
        assert!(decode(b"garbage").is_none());
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&100u32.to_le_bytes());
        assert!(decode(&bytes).is_none());
    }
}
