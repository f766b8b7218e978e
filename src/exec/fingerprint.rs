//! Is a node fresh, and if not, why? Shared by `run`, `status`, `dag`, `show`.
//!
//! Freshness is pure content addressing: a node is fresh when an object for
//! its current key exists. Its key needs its inputs' artifact digests, so a
//! node downstream of a stale one has no key yet ([`Freshness::Stale`] with
//! `key: None`). The *reasons* come from comparing the current key material
//! with the manifest of the key this node last built (from the state log),
//! like cargo's `DirtyReason`: the evidence (old and new values) is data.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::cache::{Cache, Manifest, Stamp, StateLog, StateRecord, Verdict};
use crate::graph::Plan;
use crate::hash::{expand_globs, map_halves, ContentHash, KeyMaterial, StatCache};
use crate::spec::Value;

/// Why a node must (re)build.
#[derive(Clone, Debug, PartialEq)]
pub enum DirtyReason {
    /// No build of this node is recorded.
    NeverBuilt,
    /// The last build's object is gone from the cache (cleaned, gc'd, removed).
    ArtifactMissing,
    /// The object is in the cache but its content no longer matches its
    /// manifest (edited, truncated, bit rot): it is removed and rebuilt.
    ArtifactCorrupt {
        /// What differs.
        detail: String,
    },
    /// A hashed param differs from the last build.
    ParamChanged {
        /// Dotted path.
        path: String,
        /// Value at the last build (`None`: absent).
        old: Option<Value>,
        /// Value now.
        new: Option<Value>,
    },
    /// The kind's implementation version changed.
    KindVersionChanged {
        /// Version at the last build.
        old: u32,
        /// Version now.
        new: u32,
    },
    /// An input's artifact differs from the one used last time.
    InputChanged {
        /// The input reference.
        name: String,
    },
    /// The input references themselves changed (added, removed, renamed).
    InputsRedeclared,
    /// Upstream nodes must build first, so this node's key is not known yet;
    /// it rebuilds only if their artifacts change.
    UpstreamStale {
        /// The upstream nodes.
        nodes: Vec<String>,
    },
    /// A declared project file changed, appeared or disappeared.
    FileChanged {
        /// Path relative to the project root.
        path: String,
    },
    /// Something not covered above differs (e.g. the last build's manifest is gone).
    NothingObvious,
}

impl fmt::Display for DirtyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| v.as_ref().map_or("(unset)".to_string(), |v| v.to_string());
        match self {
            DirtyReason::NeverBuilt => write!(f, "never built"),
            DirtyReason::ArtifactMissing => write!(f, "artifact missing from the cache"),
            DirtyReason::ArtifactCorrupt { detail } => write!(f, "artifact corrupt in the cache ({detail})"),
            DirtyReason::ParamChanged { path, old, new } => {
                let (old, new) = abbreviate_pair(&show(old), &show(new));
                write!(f, "param `{path}` changed {old} → {new}")
            }
            DirtyReason::KindVersionChanged { old, new } => {
                write!(f, "kind implementation changed (version {old} → {new})")
            }
            DirtyReason::InputChanged { name } => write!(f, "input `{name}` changed"),
            DirtyReason::InputsRedeclared => write!(f, "input list changed"),
            DirtyReason::UpstreamStale { nodes } => match nodes.as_slice() {
                [one] => write!(f, "waits for `{one}`"),
                [first, rest @ ..] => write!(f, "waits for `{first}` and {} more", rest.len()),
                [] => write!(f, "waits for upstream nodes"),
            },
            DirtyReason::FileChanged { path } => write!(f, "file `{path}` changed"),
            DirtyReason::NothingObvious => write!(f, "key changed (previous build's record unavailable)"),
        }
    }
}

/// The state of one node against the cache.
#[derive(Clone, Debug)]
pub enum Freshness {
    /// Built and cached.
    Fresh {
        /// Its key.
        key: ContentHash,
        /// Its artifact digest.
        artifact: ContentHash,
    },
    /// Must build.
    Stale {
        /// Its key, if all inputs are known.
        key: Option<ContentHash>,
        /// Why.
        reasons: Vec<DirtyReason>,
    },
    /// Cannot build as declared (e.g. a declared file is missing).
    Broken {
        /// Why.
        message: String,
    },
}

impl Freshness {
    /// Why the node is as it is, in one line: "up to date", what broke it,
    /// or its reasons to rebuild.
    pub fn reasons_text(&self) -> String {
        match self {
            Freshness::Fresh { .. } => "up to date".into(),
            Freshness::Broken { message } => message.clone(),
            Freshness::Stale { reasons, .. } => reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        }
    }
}

/// What of a node's params its key hashes: the schema's hashed part, and
/// what its kind depends on in this machine as `environment`.
fn hashed_params(node: &crate::spec::NodeSpec) -> Value {
    let mut params = node.kind.schema().hashed_part(&node.params);
    if let (Some(environment), Value::Map(map)) = (node.kind.environment(&node.params), &mut params) {
        map.insert("environment".into(), environment);
    }
    params
}

/// The stat cache's file in the cache directory.
pub const STAT_CACHE_FILE: &str = "statcache.bin";

/// Computes keys and freshness for the nodes of one plan.
pub struct Fingerprinter<'a> {
    plan: &'a Plan,
    cache: &'a Cache,
    root: PathBuf,
    stat: StatCache,
    state: StateLog,
    /// Per node: its declared files and their digests (computed for all
    /// nodes in one batch on first use).
    files: Option<Vec<Result<FileDigests, String>>>,
    /// Stamps of the objects last built by this plan's nodes (computed in
    /// one batch on first use; each is taken once).
    stamps: Option<HashMap<ContentHash, io::Result<Option<Stamp>>>>,
}

/// Declared files (relative path, content digest), sorted by path.
type FileDigests = Vec<(String, ContentHash)>;
/// A pattern list and the files it expands to.
type Expansion = (Vec<String>, Result<Vec<String>, String>);

/// The material of one node's key, kept to write its manifest.
#[derive(Clone, Debug)]
pub struct KeyParts {
    /// Hashed params.
    pub params: Value,
    /// Per input reference: name and (node id, digest) of each artifact.
    pub inputs: Vec<(String, Vec<(String, ContentHash)>)>,
    /// Declared files.
    pub files: Vec<(String, ContentHash)>,
}

impl KeyParts {
    /// The key these parts produce for a kind.
    pub fn key(&self, kind: &str, version: u32) -> ContentHash {
        let inputs: Vec<(String, Vec<ContentHash>)> =
            self.inputs.iter().map(|(n, a)| (n.clone(), a.iter().map(|(_, d)| *d).collect())).collect();
        KeyMaterial { kind, version, params: &self.params, inputs: &inputs, files: &self.files }.key()
    }
}

impl<'a> Fingerprinter<'a> {
    /// Loads the stat cache and the experiment's state log.
    pub fn new(plan: &'a Plan, cache: &'a Cache, root: &Path) -> Self {
        Self::with_stat_cache(plan, cache, root, StatCache::load(&cache.root().join(STAT_CACHE_FILE), root))
    }

    /// As [`Fingerprinter::new`], with a stat cache the caller keeps between
    /// surveys (`serve`, which must not save one to the cache).
    pub fn with_stat_cache(plan: &'a Plan, cache: &'a Cache, root: &Path, stat: StatCache) -> Self {
        let state = cache.state(&plan.experiment.name);
        Fingerprinter { plan, cache, root: root.to_path_buf(), stat, state, files: None, stamps: None }
    }

    /// The stat cache, with what this fingerprinter learned; not saved.
    pub fn into_stat_cache(self) -> StatCache {
        self.stat
    }

    /// The state log (the executor records builds through it).
    pub fn state_mut(&mut self) -> &mut StateLog {
        &mut self.state
    }

    /// Saves the stat cache (call once at the end).
    pub fn finish(mut self) {
        // Losing the stat cache only costs re-hashing next time.
        let _ = self.stat.save();
    }

    /// Content digests of node `i`'s declared files, sorted by path.
    fn files(&mut self, i: usize) -> Result<FileDigests, String> {
        if self.files.is_none() {
            self.files = Some(self.digest_declared_files());
        }
        self.files.as_ref().expect("just computed")[i].clone()
    }

    /// Expands every node's file patterns (each distinct pattern list once)
    /// and digests the union of the files in one pass: one `stat` per file
    /// however many nodes read it.
    fn digest_declared_files(&mut self) -> Vec<Result<FileDigests, String>> {
        let started = std::time::Instant::now();
        let nodes = &self.plan.experiment.nodes;
        let mut expansions: HashMap<Vec<String>, Result<Vec<String>, String>> = HashMap::new();
        let per_node: Vec<Vec<String>> = nodes.iter().map(|n| n.kind.file_inputs(&n.params)).collect();
        let mut distinct: Vec<&Vec<String>> = per_node.iter().filter(|p| !p.is_empty()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        // Walking directories is syscall-bound: two threads halve it for big studies.
        let expand = |list: &[&Vec<String>]| -> Vec<Expansion> {
            list.iter()
                .map(|p| ((*p).clone(), expand_globs(&self.root, p).map_err(|e| format!("declared input: {e}"))))
                .collect()
        };
        let expanded = map_halves(&distinct, 256, expand);
        expansions.extend(expanded);
        let mut union: Vec<&String> = expansions.values().filter_map(|r| r.as_ref().ok()).flatten().collect();
        union.sort_unstable();
        union.dedup();
        let abs: Vec<PathBuf> = union.iter().map(|r| self.root.join(r)).collect();
        let expanded = started.elapsed();
        let digests: HashMap<&String, io::Result<ContentHash>> =
            union.iter().copied().zip(self.stat.digest_all(&abs)).collect();
        tracing::debug!(
            patterns = expansions.len(),
            files = abs.len(),
            "declared files: globs expanded in {expanded:?}, digested in {:?}",
            started.elapsed() - expanded
        );
        per_node
            .iter()
            .map(|patterns| {
                if patterns.is_empty() {
                    return Ok(Vec::new());
                }
                let rel = expansions[patterns].clone()?;
                rel.into_iter()
                    .map(|path| match &digests[&path] {
                        Ok(d) => Ok((path, *d)),
                        Err(e) => Err(format!("declared input `{path}`: {e}")),
                    })
                    .collect()
            })
            .collect()
    }

    /// Key material of node `i`, given the artifact digests known so far.
    /// `Err` lists the upstream nodes whose digest is still unknown.
    fn key_parts(&mut self, i: usize, digests: &[Option<ContentHash>]) -> Result<Result<KeyParts, Vec<usize>>, String> {
        let node = &self.plan.experiment.nodes[i];
        let mut missing = Vec::new();
        let mut inputs = Vec::new();
        // Helpers (order-only inputs) are outside the key.
        for input in node.inputs.iter().filter(|input| !input.order_only) {
            let mut artifacts = Vec::new();
            for &p in &input.nodes {
                match digests[p] {
                    Some(d) => artifacts.push((self.plan.experiment.nodes[p].id.0.clone(), d)),
                    None => missing.push(p),
                }
            }
            inputs.push((input.name.clone(), artifacts));
        }
        let files = self.files(i)?;
        if !missing.is_empty() {
            missing.dedup();
            return Ok(Err(missing));
        }
        let params = hashed_params(node);
        Ok(Ok(KeyParts { params, inputs, files }))
    }

    /// Freshness of node `i` given its inputs' digests (`None`: not built).
    pub fn evaluate(&mut self, i: usize, digests: &[Option<ContentHash>]) -> Freshness {
        self.evaluate_with_parts(i, digests).0
    }

    /// Like [`Self::evaluate`], also returning the key material whenever the
    /// key is known (the executor writes it into the manifest of a build).
    pub fn evaluate_with_parts(&mut self, i: usize, digests: &[Option<ContentHash>]) -> (Freshness, Option<KeyParts>) {
        let node = &self.plan.experiment.nodes[i];
        let parts = match self.key_parts(i, digests) {
            Err(message) => return (Freshness::Broken { message }, None),
            Ok(Err(waiting)) => {
                let nodes = waiting.iter().map(|&p| self.plan.experiment.nodes[p].id.0.clone()).collect();
                let mut reasons = vec![DirtyReason::UpstreamStale { nodes }];
                if let Some(old) = self.last_manifest(i) {
                    let params = hashed_params(node);
                    diff_params("", Some(&old.params), Some(&params), &mut reasons);
                }
                return (Freshness::Stale { key: None, reasons }, None);
            }
            Ok(Ok(parts)) => parts,
        };
        let key = parts.key(node.kind.name(), node.kind.version());
        match self.check_intact(i, &key) {
            Ok(artifact) => return (Freshness::Fresh { key, artifact }, Some(parts)),
            Err(Some(corrupt)) => return (Freshness::Stale { key: Some(key), reasons: vec![corrupt] }, Some(parts)),
            // Not in the cache.
            Err(None) => {}
        }
        let reasons = self.explain(i, &key, &parts);
        (Freshness::Stale { key: Some(key), reasons }, Some(parts))
    }

    /// The artifact digest of node `i`'s object `key` if the object is
    /// intact. A stamp equal to the one recorded when it was last known
    /// intact proves that cheaply; otherwise the content is re-hashed
    /// against the manifest once, and an intact object gets its new stamp
    /// recorded. `Err(Some(_))`: corrupt; `Err(None)`: not in the cache.
    fn check_intact(&mut self, i: usize, key: &ContentHash) -> Result<ContentHash, Option<DirtyReason>> {
        if self.stamps.is_none() {
            self.stamps = Some(self.stamp_recorded_objects());
        }
        let id = &self.plan.experiment.nodes[i].id.0;
        let recorded = self.state.get(id).filter(|r| r.key == *key);
        let stamp = self.stamps.as_mut().expect("just computed").remove(key).unwrap_or_else(|| self.cache.stamp(key));
        let stamp = match stamp {
            Ok(None) => return Err(None),
            Ok(Some(now)) => Some(now),
            // Unreadable (e.g. `out/` gone): `verify` says what is wrong.
            Err(_) => None,
        };
        if let Some(r) = recorded.filter(|r| stamp.is_some() && r.stamp == stamp) {
            return Ok(r.artifact);
        }
        let corrupt = |detail: String| Err(Some(DirtyReason::ArtifactCorrupt { detail }));
        match self.cache.verify(key) {
            Ok(Verdict::Ok) => {}
            Ok(Verdict::Missing) => return Err(None),
            Ok(Verdict::Corrupt { reason }) => return corrupt(reason),
            Err(e) => return corrupt(e.to_string()),
        }
        let artifact = match self.cache.manifest(key) {
            Ok(Some(m)) => m.artifact,
            Ok(None) => return Err(None),
            Err(e) => return corrupt(e.to_string()),
        };
        tracing::debug!(node = %id, "object {} re-verified: intact", key.short());
        if let Err(e) = self.state.record(id, StateRecord { key: *key, artifact, stamp }) {
            tracing::warn!("cannot record state of {id}: {e}");
        }
        Ok(artifact)
    }

    /// Stamps of the objects the state log says this plan's nodes built
    /// last (usually their current keys), on two threads: checking them is
    /// a few system calls per node, the bulk of a no-op `status`.
    fn stamp_recorded_objects(&self) -> HashMap<ContentHash, io::Result<Option<Stamp>>> {
        let mut keys: Vec<ContentHash> =
            self.plan.experiment.nodes.iter().filter_map(|n| self.state.get(&n.id.0)).map(|r| r.key).collect();
        keys.sort_unstable();
        keys.dedup();
        let stamp = |ks: &[ContentHash]| ks.iter().map(|k| (*k, self.cache.stamp(k))).collect::<Vec<_>>();
        map_halves(&keys, 256, stamp).into_iter().collect()
    }

    fn last_manifest(&self, i: usize) -> Option<Manifest> {
        let record = self.state.get(&self.plan.experiment.nodes[i].id.0)?;
        self.cache.manifest(&record.key).ok().flatten()
    }

    fn explain(&self, i: usize, key: &ContentHash, parts: &KeyParts) -> Vec<DirtyReason> {
        let node = &self.plan.experiment.nodes[i];
        let Some(record) = self.state.get(&node.id.0) else { return vec![DirtyReason::NeverBuilt] };
        if record.key == *key {
            return vec![DirtyReason::ArtifactMissing];
        }
        let Some(old) = self.cache.manifest(&record.key).ok().flatten() else {
            return vec![DirtyReason::NothingObvious];
        };
        let mut reasons = Vec::new();
        if old.kind_version != node.kind.version() {
            reasons.push(DirtyReason::KindVersionChanged { old: old.kind_version, new: node.kind.version() });
        }
        diff_params("", Some(&old.params), Some(&parts.params), &mut reasons);
        let old_names: Vec<&str> = old.inputs.iter().map(|i| i.name.as_str()).collect();
        let new_names: Vec<&str> = parts.inputs.iter().map(|(n, _)| n.as_str()).collect();
        if old_names != new_names {
            reasons.push(DirtyReason::InputsRedeclared);
        } else {
            for (o, (name, artifacts)) in old.inputs.iter().zip(&parts.inputs) {
                let old_digests: Vec<ContentHash> = o.artifacts.iter().map(|(_, d)| *d).collect();
                let new_digests: Vec<ContentHash> = artifacts.iter().map(|(_, d)| *d).collect();
                if old_digests != new_digests {
                    reasons.push(DirtyReason::InputChanged { name: name.clone() });
                }
            }
        }
        let mut paths: Vec<&str> =
            old.files.iter().map(|(p, _)| p.as_str()).chain(parts.files.iter().map(|(p, _)| p.as_str())).collect();
        paths.sort_unstable();
        paths.dedup();
        for path in paths {
            let a = old.files.iter().find(|(p, _)| p == path).map(|(_, d)| d);
            let b = parts.files.iter().find(|(p, _)| p == path).map(|(_, d)| d);
            if a != b {
                reasons.push(DirtyReason::FileChanged { path: path.to_string() });
            }
        }
        if reasons.is_empty() {
            reasons.push(DirtyReason::NothingObvious);
        }
        reasons
    }
}

/// Long values (shell commands) are shown as a window around the first
/// difference, so the reason fits on a line.
fn abbreviate_pair(old: &str, new: &str) -> (String, String) {
    const MAX: usize = 48;
    if old.chars().count() <= MAX && new.chars().count() <= MAX {
        return (old.to_string(), new.to_string());
    }
    let first_diff = old.chars().zip(new.chars()).take_while(|(a, b)| a == b).count();
    let start = first_diff.saturating_sub(12);
    let window = |s: &str| {
        let total = s.chars().count();
        let body: String = s.chars().skip(start).take(MAX - 12).collect();
        let head = if start > 0 { "…" } else { "" };
        let tail = if start + MAX - 12 < total { "…" } else { "" };
        format!("`{head}{body}{tail}`")
    };
    (window(old), window(new))
}

/// Appends one `ParamChanged` per differing leaf of two param trees.
fn diff_params(prefix: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<DirtyReason>) {
    match (old, new) {
        (Some(Value::Map(a)), Some(Value::Map(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            for k in keys {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                diff_params(&path, a.get(k), b.get(k), out);
            }
        }
        (a, b) if !same_value(a, b) => {
            out.push(DirtyReason::ParamChanged { path: prefix.to_string(), old: a.cloned(), new: b.cloned() })
        }
        _ => {}
    }
}

/// Equality under the hash's number normalisation (1e3 == 1000).
fn same_value(a: Option<&Value>, b: Option<&Value>) -> bool {
    let enc = |v: Option<&Value>| {
        v.map(|v| {
            let mut out = Vec::new();
            crate::hash::canonical_bytes(v, &mut out);
            out
        })
    };
    enc(a) == enc(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn param_diffs_name_the_leaf_with_evidence() {
        let old = Value::Map(BTreeMap::from([(
            "optim".into(),
            Value::Map(BTreeMap::from([("lr".into(), Value::Float(5e-4))])),
        )]));
        let new = Value::Map(BTreeMap::from([(
            "optim".into(),
            Value::Map(BTreeMap::from([("lr".into(), Value::Float(3e-4))])),
        )]));
        let mut out = vec![];
        diff_params("", Some(&old), Some(&new), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to_string(), "param `optim.lr` changed 5e-4 → 3e-4");
    }

    #[test]
    fn long_values_are_windowed_around_the_change() {
        let old = format!("{} | wc -l > $OUT/a", "x".repeat(80));
        let new = format!("{} | wc -w > $OUT/a", "x".repeat(80));
        let (a, b) = abbreviate_pair(&old, &new);
        assert!(a.contains("wc -l") && b.contains("wc -w"), "{a} {b}");
        assert!(a.chars().count() < 50);
    }

    #[test]
    fn normalised_numbers_are_not_a_change() {
        let mut out = vec![];
        diff_params("x", Some(&Value::Int(1000)), Some(&Value::Float(1e3)), &mut out);
        assert!(out.is_empty());
    }
}
