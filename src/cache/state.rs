//! Which key each node of an experiment last built: the memory behind
//! "why does this rerun?".
//!
//! An append-only text log, one `node<TAB>key<TAB>digest<TAB>stamp` line per
//! commit (`-` as digest records a failed attempt at that key; the stamp,
//! absent in old logs, is the object's [`Stamp`] when it was last known
//! intact); the last line for a node wins. Appends of one short line are atomic, so
//! concurrent runs and crashes cost at most a torn last line, which is
//! skipped. The log is compacted when it grows to several times its content.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Stamp;
use crate::hash::ContentHash;

/// The last build of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateRecord {
    /// Its key.
    pub key: ContentHash,
    /// Its artifact digest.
    pub artifact: ContentHash,
    /// The object's stamp when it was last known intact.
    pub stamp: Option<Stamp>,
}

impl StateRecord {
    fn line(&self, node: &str) -> String {
        match self.stamp {
            Some(Stamp(s)) => format!("{node}\t{}\t{}\t{s:016x}\n", self.key, self.artifact),
            None => format!("{node}\t{}\t{}\n", self.key, self.artifact),
        }
    }
}

/// The loaded state log of one experiment.
#[derive(Debug)]
pub struct StateLog {
    path: PathBuf,
    records: HashMap<String, StateRecord>,
    failures: HashMap<String, ContentHash>,
}

impl StateLog {
    /// Loads (empty if missing); compacts a log that has grown long.
    pub fn load(path: &Path) -> Self {
        let text = fs::read_to_string(path).unwrap_or_default();
        let mut records = HashMap::new();
        let mut failures = HashMap::new();
        let mut lines = 0usize;
        for line in text.lines() {
            lines += 1;
            let mut parts = line.split('\t');
            let (Some(node), Some(key), Some(digest), stamp, None) =
                (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some(key) = ContentHash::from_hex(key) else { continue };
            if digest == "-" {
                failures.insert(node.to_string(), key);
            } else if let Some(artifact) = ContentHash::from_hex(digest) {
                // A torn stamp reads as none: the object is then re-verified once.
                let stamp = stamp.filter(|s| s.len() == 16).and_then(|s| u64::from_str_radix(s, 16).ok()).map(Stamp);
                failures.remove(node);
                records.insert(node.to_string(), StateRecord { key, artifact, stamp });
            }
        }
        let log = StateLog { path: path.to_path_buf(), records, failures };
        if lines > 64 && lines > 4 * log.records.len() {
            // Best effort: a failed compaction leaves a longer but valid log.
            let _ = log.compact();
        }
        log
    }

    /// The last build of `node`.
    pub fn get(&self, node: &str) -> Option<StateRecord> {
        self.records.get(node).copied()
    }

    /// The key of `node`'s last attempt, if that attempt failed.
    pub fn failed_key(&self, node: &str) -> Option<ContentHash> {
        self.failures.get(node).copied()
    }

    /// Records a build (appends one line to the log).
    pub fn record(&mut self, node: &str, record: StateRecord) -> std::io::Result<()> {
        self.records.insert(node.to_string(), record);
        self.failures.remove(node);
        self.append(&record.line(node))
    }

    /// Records a failed attempt at `key`.
    pub fn record_failure(&mut self, node: &str, key: ContentHash) -> std::io::Result<()> {
        self.failures.insert(node.to_string(), key);
        self.append(&format!("{node}\t{key}\t-\n"))
    }

    fn append(&self, line: &str) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut f = OpenOptions::new().create(true).append(true).open(&self.path)?;
        f.write_all(line.as_bytes())
    }

    /// Forgets `node` (used by `clean`).
    pub fn forget(&mut self, node: &str) -> std::io::Result<()> {
        self.records.remove(node);
        self.failures.remove(node);
        self.compact()
    }

    fn compact(&self) -> std::io::Result<()> {
        let tmp = self.path.with_extension(format!("compact{}", std::process::id()));
        let mut text = String::new();
        for (node, r) in &self.records {
            text.push_str(&r.line(node));
        }
        for (node, key) in &self.failures {
            text.push_str(&format!("{node}\t{key}\t-\n"));
        }
        fs::write(&tmp, text)?;
        fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_record_wins_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let mut log = StateLog::load(&path);
        let r1 = StateRecord { key: ContentHash::of(b"1"), artifact: ContentHash::of(b"a"), stamp: None };
        let r2 = StateRecord {
            key: ContentHash::of(b"2"),
            artifact: ContentHash::of(b"b"),
            stamp: Some(Stamp(0x0123_4567_89ab_cdef)),
        };
        log.record("n", r1).unwrap();
        log.record("n", r2).unwrap();
        fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"m\tdeadbeef").unwrap();
        let log = StateLog::load(&path);
        assert_eq!(log.get("n"), Some(r2));
        assert_eq!(log.get("m"), None);
    }
}
