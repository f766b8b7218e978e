//! `scalemake.toml`: settings of the machine or cluster a study runs on,
//! kept beside the experiment file rather than typed as flags on every call.
//! They never enter a node's key (where a node runs does not change what
//! it builds). Flags and `SCALEMAKE_*` variables take precedence over it.
//!
//! ```toml
//! [slurm]
//! partition = "gpu"
//! account = "myproj"
//! time = "1-00:00:00"
//! array_limit = 8          # at most 8 tasks of one sweep run at once
//! signal_grace = 300       # seconds of warning before a time limit or preemption
//!
//! [slurm.kinds.train]      # per-kind overrides
//! time = "2-00:00:00"
//! mem = "64G"
//!
//! [remote]                 # the cache shared with other machines
//! url = "s3://team-bucket/scalemake"
//! read_only = true         # this machine only reads
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The file's name; it is looked for beside the experiment file.
pub const FILE_NAME: &str = "scalemake.toml";

/// Why `scalemake.toml` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It exists but cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid TOML or has unknown keys (the message has line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, where.
        message: String,
    },
}

/// Everything `scalemake.toml` can say.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Slurm settings.
    #[serde(default)]
    pub slurm: SlurmConfig,
    /// The remote cache.
    #[serde(default)]
    pub remote: RemoteConfig,
}

/// `[remote]`: the cache shared with other machines (`--remote` and
/// `$SCALEMAKE_REMOTE` take precedence).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// `file:///shared/dir` or `s3://bucket/prefix`.
    pub url: Option<String>,
    /// Fetch from it but never upload (a laptop reading what CI built).
    #[serde(default)]
    pub read_only: bool,
}

/// `sbatch` settings, for every job or per node kind.
///
/// The [`JobSettings`] fields are repeated here rather than flattened in:
/// serde ignores `deny_unknown_fields` on a struct with a flattened field,
/// and a misspelt `partiton` must be an error, not a silent default.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// `--partition` of every job.
    pub partition: Option<String>,
    /// `--account` of every job.
    pub account: Option<String>,
    /// `--qos` of every job.
    pub qos: Option<String>,
    /// `--time` of every job.
    pub time: Option<String>,
    /// `--mem` of every job.
    pub mem: Option<String>,
    /// At most this many tasks of one job array (a sweep) run at once (`%N`).
    pub array_limit: Option<u32>,
    /// Seconds before a time limit (or on preemption) at which training jobs
    /// get SIGUSR1 to checkpoint and requeue themselves.
    pub signal_grace: Option<u32>,
    /// Overrides for the jobs of one node kind (`train`, `tokenizer`, …).
    #[serde(default)]
    pub kinds: BTreeMap<String, JobSettings>,
}

/// The `sbatch` options a job may set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// `--time`.
    pub time: Option<String>,
    /// `--mem`.
    pub mem: Option<String>,
}

impl JobSettings {
    /// Each field of `self`, else `fallback`'s.
    pub fn or(&self, fallback: &JobSettings) -> JobSettings {
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        JobSettings {
            partition: pick(&self.partition, &fallback.partition),
            account: pick(&self.account, &fallback.account),
            qos: pick(&self.qos, &fallback.qos),
            time: pick(&self.time, &fallback.time),
            mem: pick(&self.mem, &fallback.mem),
        }
    }
}

impl SlurmConfig {
    /// The settings of every job.
    pub fn all(&self) -> JobSettings {
        JobSettings {
            partition: self.partition.clone(),
            account: self.account.clone(),
            qos: self.qos.clone(),
            time: self.time.clone(),
            mem: self.mem.clone(),
        }
    }
}

/// Reads `scalemake.toml` from `dir`; the default config if there is none.
pub fn load(dir: &Path) -> Result<Config, ConfigError> {
    let path = dir.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(source) => return Err(ConfigError::Io { path, source }),
    };
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path, message: e.to_string().trim_end().to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Config::default());
    }

    #[test]
    fn slurm_settings_and_per_kind_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[slurm]\npartition = \"gpu\"\ntime = \"1:00:00\"\narray_limit = 4\n\n[slurm.kinds.train]\ntime = \"2-00:00:00\"\n";
        std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
        let config = load(dir.path()).unwrap();
        assert_eq!(config.slurm.partition.as_deref(), Some("gpu"));
        assert_eq!(config.slurm.array_limit, Some(4));
        let train = config.slurm.kinds["train"].or(&config.slurm.all());
        assert_eq!((train.partition.as_deref(), train.time.as_deref()), (Some("gpu"), Some("2-00:00:00")));
    }

    #[test]
    fn remote_settings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "[remote]\nurl = \"s3://b/p\"\nread_only = true\n").unwrap();
        let remote = load(dir.path()).unwrap().remote;
        assert_eq!((remote.url.as_deref(), remote.read_only), (Some("s3://b/p"), true));
    }

    #[test]
    fn an_unknown_key_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "[slurm]\npartiton = \"gpu\"\n").unwrap();
        let message = load(dir.path()).unwrap_err().to_string();
        assert!(
            message.contains("scalemake.toml") && message.contains("line 2") && message.contains("partiton"),
            "{message}"
        );
    }
}
