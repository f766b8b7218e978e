//! `manifest.json`: what an artifact is and how it was made.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::{ContentHash, FileDigest};
use crate::spec::Value;

/// Bumped when the manifest layout changes incompatibly.
const MANIFEST_FORMAT: u32 = 1;

/// One input reference as it was when the artifact was built.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestInput {
    /// The reference as written.
    pub name: String,
    /// (node id, artifact digest) of each selected node.
    pub artifacts: Vec<(String, ContentHash)>,
}

/// Everything recorded about one built artifact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version.
    pub format: u32,
    /// The node key (the object's name).
    pub key: ContentHash,
    /// Digest of the `out/` tree: what dependents' keys see.
    pub artifact: ContentHash,
    /// Node id that built it (informational: keys do not depend on names).
    pub node: String,
    /// Kind name.
    pub kind: String,
    /// Kind implementation version.
    pub kind_version: u32,
    /// Hashed params (what the key saw).
    pub params: Value,
    /// Inputs (what the key saw).
    pub inputs: Vec<ManifestInput>,
    /// Declared project files and their digests (what the key saw).
    pub files: Vec<(String, ContentHash)>,
    /// Every file of the artifact.
    pub outputs: Vec<FileDigest>,
    /// Total artifact bytes.
    pub bytes: u64,
    /// Wall-clock seconds the node ran.
    pub seconds: f64,
    /// Unix time the build finished.
    pub finished_unix: u64,
    /// Numbers the node recorded.
    pub metrics: BTreeMap<String, f64>,
    /// Human-readable lines the node recorded (shown by `scalemake show`).
    #[serde(default)]
    pub summary: Vec<String>,
    /// What the node warned of: `run` prints it, `show` lists it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// scalemake version that built it.
    pub tool_version: String,
    /// Host name.
    pub host: String,
}

impl Manifest {
    /// A manifest for a freshly digested artifact; the caller fills in the rest.
    pub fn new(key: ContentHash, artifact: ContentHash, outputs: Vec<FileDigest>) -> Self {
        let bytes = outputs.iter().map(|f| f.size).sum();
        let finished_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Manifest {
            format: MANIFEST_FORMAT,
            key,
            artifact,
            node: String::new(),
            kind: String::new(),
            kind_version: 0,
            params: Value::Null,
            inputs: Vec::new(),
            files: Vec::new(),
            outputs,
            bytes,
            seconds: 0.0,
            warnings: Vec::new(),
            finished_unix,
            metrics: BTreeMap::new(),
            summary: Vec::new(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            host: crate::process::hostname().unwrap_or_default(),
        }
    }
}
