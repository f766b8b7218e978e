//! Announcements of local runs in progress: the nodes each run will build,
//! in `runs/<pid>.<n>.json`, flocked for the run's whole life. A reader
//! (`status`, `serve`) tells a node a live run has queued from one nobody
//! builds, and a crashed run's leftover (whose lock the kernel dropped)
//! from a live one, without writing anything.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::{io_err, Cache, CacheError, Result};

/// Tells two announcements of one process apart (tests run several).
static ANNOUNCEMENTS: AtomicU64 = AtomicU64::new(0);

/// What a run announces.
#[derive(Serialize, Deserialize)]
struct Announced {
    experiment: String,
    pid: u32,
    nodes: Vec<String>,
}

/// A live announcement: its file goes, and its lock with it, when dropped
/// (or when the process dies, however it dies).
#[derive(Debug)]
pub struct RunAnnouncement {
    path: PathBuf,
    _lock: File,
}

impl Drop for RunAnnouncement {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Cache {
    fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// Announces that this process will build `nodes` of `experiment`, until
    /// the returned guard is dropped. The file is written and locked before
    /// it is renamed into place, so no reader sees it unlocked or half
    /// written. Leftovers of dead runs are swept on the way.
    pub fn announce_run(&self, experiment: &str, nodes: Vec<String>) -> Result<RunAnnouncement> {
        let dir = self.runs_dir();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        for (path, file) in self.announcement_files() {
            if file.try_lock().is_ok() {
                let _ = fs::remove_file(path);
            }
        }
        let name = format!("{}.{}", std::process::id(), ANNOUNCEMENTS.fetch_add(1, Ordering::Relaxed));
        let (tmp, path) = (dir.join(format!(".{name}.tmp")), dir.join(format!("{name}.json")));
        let body = Announced { experiment: experiment.to_string(), pid: std::process::id(), nodes };
        let text = serde_json::to_vec(&body).map_err(|e| CacheError::Io { path: tmp.clone(), source: e.into() })?;
        fs::write(&tmp, text).map_err(io_err(&tmp))?;
        let lock = File::open(&tmp).map_err(io_err(&tmp))?;
        lock.lock().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(RunAnnouncement { path, _lock: lock })
    }

    /// The nodes of `experiment` that live runs announced.
    pub fn announced_nodes(&self, experiment: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (_, file) in self.announcement_files() {
            // Taking the lock means its run is gone (the next run sweeps it).
            if !matches!(file.try_lock(), Err(fs::TryLockError::WouldBlock)) {
                continue;
            }
            let Ok(announced) = serde_json::from_reader::<_, Announced>(&file) else { continue };
            if announced.experiment == experiment {
                out.extend(announced.nodes);
            }
        }
        out
    }

    /// Every announcement file, open for reading.
    fn announcement_files(&self) -> Vec<(PathBuf, File)> {
        let Ok(entries) = fs::read_dir(self.runs_dir()) else { return Vec::new() };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| File::open(&p).ok().map(|f| (p, f)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_announcement_is_seen_and_a_dropped_one_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let run = cache.announce_run("exp", vec!["a".into(), "b".into()]).unwrap();
        let other = cache.announce_run("other", vec!["c".into()]).unwrap();
        assert_eq!(cache.announced_nodes("exp"), ["a".to_string(), "b".to_string()].into_iter().collect());
        drop(run);
        assert!(cache.announced_nodes("exp").is_empty());
        assert_eq!(cache.announced_nodes("other").len(), 1);
        drop(other);
        assert_eq!(fs::read_dir(cache.runs_dir()).unwrap().count(), 0);
    }

    #[test]
    fn a_dead_runs_file_is_ignored_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        fs::create_dir_all(cache.runs_dir()).unwrap();
        // What a killed run leaves: the file, no lock.
        let body = r#"{"experiment":"exp","pid":1,"nodes":["a"]}"#;
        fs::write(cache.runs_dir().join("1.0.json"), body).unwrap();
        assert!(cache.announced_nodes("exp").is_empty());
        let live = cache.announce_run("exp", vec!["b".into()]).unwrap();
        assert!(!cache.runs_dir().join("1.0.json").exists());
        assert_eq!(cache.announced_nodes("exp"), ["b".to_string()].into_iter().collect());
        drop(live);
    }
}
