//! (path, size, mtime, inode) → content digest, persisted between runs.
//!
//! Loading it is on the path of every no-op `status`, so the file is a table
//! sorted by path (paths relative to the project root) that is searched in
//! place by binary search: loading 10,000 entries is one `read` and one scan
//! for offsets, with no per-entry allocation or hashing. Entries learned in a
//! run go to a small overlay and are merged into a new table on save. Any
//! damage to the file just empties the cache.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use super::{digest_file, map_halves, ContentHash};

const MAGIC: &[u8; 8] = b"SMSTAT02";
/// Bytes after the path of an entry: size u64, mtime i128, inode u64, digest.
const FIXED: usize = 8 + 16 + 8 + 32;
/// A file modified this recently might change again within the same mtime
/// tick without the stat changing, so its digest is not remembered.
const RACY_NANOS: i128 = 2_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    ino: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Stamp {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ino: meta.ino(),
        }
    }
}

/// The persistent stat cache of one project.
pub struct StatCache {
    file: PathBuf,
    root: PathBuf,
    /// The file as loaded: entries sorted by path.
    table: Vec<u8>,
    /// Byte offset of each entry of `table`, in path order.
    offsets: Vec<usize>,
    /// Entries learned in this run, by relative path.
    learned: HashMap<Vec<u8>, (Stamp, ContentHash)>,
}

impl StatCache {
    /// Loads the cache stored at `file` for the project at `root` (empty if
    /// missing or damaged).
    pub fn load(file: &Path, root: &Path) -> Self {
        let table = std::fs::read(file).unwrap_or_default();
        let offsets = index(&table).unwrap_or_default();
        let table = if offsets.is_empty() { Vec::new() } else { table };
        StatCache { file: file.to_path_buf(), root: root.to_path_buf(), table, offsets, learned: HashMap::new() }
    }

    fn key<'p>(&self, path: &'p Path) -> &'p [u8] {
        path.strip_prefix(&self.root).unwrap_or(path).as_os_str().as_bytes()
    }

    fn path_at(&self, offset: usize) -> &[u8] {
        let len = u32::from_le_bytes(self.table[offset..offset + 4].try_into().expect("4 bytes")) as usize;
        &self.table[offset + 4..offset + 4 + len]
    }

    fn entry_at(&self, offset: usize) -> (Stamp, ContentHash) {
        let rest = &self.table[offset + 4 + self.path_at(offset).len()..];
        let size = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        let mtime_ns = i128::from_le_bytes(rest[8..24].try_into().expect("16 bytes"));
        let ino = u64::from_le_bytes(rest[24..32].try_into().expect("8 bytes"));
        let digest = ContentHash(rest[32..64].try_into().expect("32 bytes"));
        (Stamp { size, mtime_ns, ino }, digest)
    }

    fn lookup(&self, key: &[u8]) -> Option<(Stamp, ContentHash)> {
        if let Some(e) = self.learned.get(key) {
            return Some(*e);
        }
        let i = self.offsets.binary_search_by(|&o| self.path_at(o).cmp(key)).ok()?;
        Some(self.entry_at(self.offsets[i]))
    }

    /// Digests of `paths` (absolute), hashing only files whose stat changed.
    /// The `stat`s of a large batch run on two threads; the misses are
    /// hashed in parallel.
    pub fn digest_all(&mut self, paths: &[PathBuf]) -> Vec<io::Result<ContentHash>> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        let lookup = |chunk: &[PathBuf]| -> Vec<Result<Result<ContentHash, Stamp>, io::Error>> {
            chunk
                .iter()
                .map(|path| {
                    let stamp = Stamp::of(&std::fs::metadata(path)?);
                    Ok(match self.lookup(self.key(path)) {
                        Some((s, d)) if s == stamp => Ok(d),
                        _ => Err(stamp),
                    })
                })
                .collect()
        };
        let looked_up = map_halves(paths, 2048, lookup);
        let mut results: Vec<Option<io::Result<ContentHash>>> = Vec::with_capacity(paths.len());
        let mut misses: Vec<(usize, Stamp)> = Vec::new();
        for (i, r) in looked_up.into_iter().enumerate() {
            match r {
                Err(e) => results.push(Some(Err(e))),
                Ok(Ok(d)) => results.push(Some(Ok(d))),
                Ok(Err(stamp)) => {
                    results.push(None);
                    misses.push((i, stamp));
                }
            }
        }
        let hashed: Vec<io::Result<ContentHash>> = misses.par_iter().map(|(i, _)| digest_file(&paths[*i])).collect();
        for ((i, stamp), digest) in misses.into_iter().zip(hashed) {
            if let Ok(d) = &digest {
                // A file modified within RACY_NANOS may change again unseen: do not remember it.
                if now - stamp.mtime_ns > RACY_NANOS {
                    let key = self.key(&paths[i]).to_vec();
                    self.learned.insert(key, (stamp, *d));
                }
            }
            results[i] = Some(digest);
        }
        results.into_iter().map(|r| r.expect("every path has a result")).collect()
    }

    /// Writes the cache back if it learned anything (temp file + rename).
    pub fn save(&mut self) -> io::Result<()> {
        if self.learned.is_empty() {
            return Ok(());
        }
        let mut all: BTreeMap<&[u8], (Stamp, ContentHash)> =
            self.offsets.iter().map(|&o| (self.path_at(o), self.entry_at(o))).collect();
        for (k, v) in &self.learned {
            all.insert(k, *v);
        }
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.file.with_extension(format!("tmp{}", std::process::id()));
        let mut f = io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(MAGIC)?;
        for (path, (stamp, digest)) in all {
            f.write_all(&(path.len() as u32).to_le_bytes())?;
            f.write_all(path)?;
            f.write_all(&stamp.size.to_le_bytes())?;
            f.write_all(&stamp.mtime_ns.to_le_bytes())?;
            f.write_all(&stamp.ino.to_le_bytes())?;
            f.write_all(&digest.0)?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &self.file)?;
        self.learned.clear();
        Ok(())
    }
}

/// Offsets of the entries of a table, or `None` if it is damaged or unsorted.
fn index(table: &[u8]) -> Option<Vec<usize>> {
    let mut pos = MAGIC.len();
    if table.get(..pos)? != MAGIC.as_slice() {
        return None;
    }
    let mut offsets = Vec::new();
    let mut previous: Option<&[u8]> = None;
    while pos < table.len() {
        let len = u32::from_le_bytes(table.get(pos..pos + 4)?.try_into().ok()?) as usize;
        let path = table.get(pos + 4..pos + 4 + len)?;
        table.get(pos + 4 + len..pos + 4 + len + FIXED)?;
        if previous.is_some_and(|p| p >= path) {
            return None;
        }
        previous = Some(path);
        offsets.push(pos);
        pos += 4 + len + FIXED;
    }
    Some(offsets)
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
        let mut cache = StatCache::load(&store, dir.path());
        let d1 = cache.digest_all(std::slice::from_ref(&f)).remove(0).unwrap();
        cache.save().unwrap();
        let mut cache = StatCache::load(&store, dir.path());
        assert_eq!(cache.offsets.len(), 1);
        assert_eq!(cache.path_at(cache.offsets[0]), b"a.txt", "paths are stored relative to the root");
        assert_eq!(cache.digest_all(std::slice::from_ref(&f)).remove(0).unwrap(), d1);
        std::fs::write(&f, "world").unwrap();
        assert_ne!(cache.digest_all(std::slice::from_ref(&f)).remove(0).unwrap(), d1);
    }

    #[test]
    fn damaged_file_means_empty_cache() {
        assert!(index(b"garbage").is_none());
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&100u32.to_le_bytes());
        assert!(index(&bytes).is_none());
    }

    #[test]
    fn many_entries_are_found_by_binary_search() {
        let dir = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        let files: Vec<PathBuf> = (0..300).map(|i| dir.path().join(format!("d{}/f{i}.txt", i % 7))).collect();
        for f in &files {
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, f.to_string_lossy().as_bytes()).unwrap();
            std::fs::File::options().write(true).open(f).unwrap().set_modified(old).unwrap();
        }
        let store = dir.path().join("stat");
        let mut cache = StatCache::load(&store, dir.path());
        let first: Vec<ContentHash> = cache.digest_all(&files).into_iter().map(Result::unwrap).collect();
        cache.save().unwrap();
        let cache = StatCache::load(&store, dir.path());
        assert_eq!(cache.offsets.len(), 300);
        for (f, d) in files.iter().zip(&first) {
            assert_eq!(cache.lookup(cache.key(f)).map(|e| e.1), Some(*d));
        }
    }
}
