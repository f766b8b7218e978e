//! `scalemake gc`: which artifacts the experiment files still reference,
//! shared with `gc --remote` (the remote cache's collector), and removing
//! the rest of the local cache.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use scalemake::cache::Cache;
use scalemake::exec::{self, Freshness, Workspace};
use scalemake::hash::ContentHash;

use super::env::{load_plan, Env};
use super::render::human_bytes;
use super::CliError;

/// Removes (with `delete`, else lists) every cached artifact that no
/// experiment in `files` references.
pub fn gc(env: &Env, files: &[PathBuf], delete: bool) -> Result<ExitCode, CliError> {
    let cache = env.cache()?;
    let keep = referenced_keys(env, &cache, files)?;
    let mut doomed: Vec<(ContentHash, u64, String)> = Vec::new();
    for key in cache.keys().map_err(|e| CliError::Failed(e.to_string()))? {
        if keep.contains(&key) {
            continue;
        }
        let manifest = cache.manifest(&key).ok().flatten();
        let (bytes, node) = manifest.map_or((0, "?".to_string()), |m| (m.bytes, m.node));
        doomed.push((key, bytes, node));
    }
    let total: u64 = doomed.iter().map(|d| d.1).sum();
    for (key, bytes, node) in &doomed {
        if delete {
            cache.remove(key).map_err(|e| CliError::Failed(e.to_string()))?;
        }
        println!(
            "{} {} {node} ({})",
            if delete { "removed" } else { "would remove" },
            key.short(),
            human_bytes(*bytes)
        );
    }
    let verb = if delete { "removed" } else { "would remove (pass --delete to do it)" };
    println!("{verb}: {} artifact(s), {}; kept {}", doomed.len(), human_bytes(total), keep.len());
    Ok(ExitCode::SUCCESS)
}

/// The experiment files `gc` keeps artifacts for: those given, else the default one.
pub(super) fn gc_files(env: &Env, files: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    Ok(if files.is_empty() {
        vec![match &env.file {
            Some(f) => f.clone(),
            None => env.default_file()?,
        }]
    } else {
        files.to_vec()
    })
}

/// Every key that the experiments in `files` reference: current keys of
/// their nodes, and the last key each node built.
pub(super) fn referenced_keys(env: &Env, cache: &Cache, files: &[PathBuf]) -> Result<BTreeSet<ContentHash>, CliError> {
    let mut keep: BTreeSet<ContentHash> = BTreeSet::new();
    for file in gc_files(env, files)? {
        let plan = load_plan(env, Some(file))?;
        let survey = exec::survey(&plan, &Workspace { root: &env.root, cache });
        for f in &survey {
            match f {
                Freshness::Fresh { key, .. } | Freshness::Stale { key: Some(key), .. } => {
                    keep.insert(*key);
                }
                _ => {}
            }
        }
        let state = cache.state(&plan.experiment.name);
        keep.extend(plan.experiment.nodes.iter().filter_map(|n| state.get(&n.id.0)).map(|r| r.key));
    }
    Ok(keep)
}
