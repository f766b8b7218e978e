//! Transfers between the local cache and the remote, on threads of their
//! own: a multi-GB download or upload must neither stall scheduling nor
//! hold a node's CPU or GPU slots (a laptop without a GPU can still fetch
//! what a GPU trained). The coordinator decides what moves — fetch a stale
//! node the remote has before building it, upload what was built here —
//! and these threads report back through [`Message`]s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::Scope;
use std::time::Instant;

use super::{lock_key, selection, survey, ExecError, Freshness, Message, Workspace, CANCELLED};
use crate::cache::remote::{Remote, Transfer};
use crate::cache::Cache;
use crate::graph::Plan;
use crate::hash::ContentHash;
use crate::nodes::Progress;

/// Transfer threads: each moves one artifact at a time (itself several
/// files in parallel).
const THREADS: usize = 2;

/// Work for a transfer thread: (node index, key).
pub(super) enum Job {
    Fetch(usize, ContentHash),
    Upload(usize, ContentHash),
}

/// An artifact fetched from the remote and committed here.
pub(super) struct Fetched {
    pub(super) artifact: ContentHash,
    pub(super) bytes: u64,
    pub(super) seconds: f64,
    /// Another process committed the key while we waited for its lock.
    pub(super) by_other: bool,
}

/// Starts the transfer threads in `scope`; they end when the returned
/// sender is dropped.
pub(super) fn spawn<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    remote: &'env Remote,
    cache: &'env Cache,
    tx: &mpsc::Sender<Message>,
) -> mpsc::Sender<Job> {
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    for _ in 0..THREADS {
        let (queue, tx) = (Arc::clone(&queue), tx.clone());
        scope.spawn(move || loop {
            let job = queue.lock().map_err(drop).and_then(|q| q.recv().map_err(drop));
            let message = match job {
                Ok(Job::Fetch(i, key)) => Message::Fetched(i, fetch(remote, cache, i, &key, &tx)),
                Ok(Job::Upload(i, key)) => Message::Uploaded(i, upload(remote, cache, i, &key, &tx)),
                Err(()) => break,
            };
            let _ = tx.send(message);
        });
    }
    jobs
}

/// Fetches node `i`'s `key`, which the remote listed: verified and
/// committed, or why not.
fn fetch(
    remote: &Remote,
    cache: &Cache,
    i: usize,
    key: &ContentHash,
    tx: &mpsc::Sender<Message>,
) -> Result<Fetched, String> {
    fetch_if_there(remote, cache, i, key, tx)?.ok_or_else(|| "no longer on the remote".into())
}

/// Fetches node `i`'s `key` under its lock if the remote has it: `Ok(None)`
/// when it does not.
pub(super) fn fetch_if_there(
    remote: &Remote,
    cache: &Cache,
    i: usize,
    key: &ContentHash,
    tx: &mpsc::Sender<Message>,
) -> Result<Option<Fetched>, String> {
    let started = Instant::now();
    let lock = lock_key(cache, key, i, tx).map_err(|e| e.to_string())?;
    if let Some(m) = cache.manifest(key).map_err(|e| e.to_string())? {
        return Ok(Some(Fetched { artifact: m.artifact, bytes: 0, seconds: 0.0, by_other: true }));
    }
    let progress = progress_to(tx, i);
    let fetched = remote.fetch(cache, key, &lock, &Transfer { progress: &progress, cancel: &CANCELLED });
    Ok(fetched.map_err(|e| e.to_string())?.map(|m| Fetched {
        artifact: m.artifact,
        bytes: m.bytes,
        seconds: started.elapsed().as_secs_f64(),
        by_other: false,
    }))
}

/// Uploads node `i`'s built `key`; the bytes sent.
pub(super) fn upload(
    remote: &Remote,
    cache: &Cache,
    i: usize,
    key: &ContentHash,
    tx: &mpsc::Sender<Message>,
) -> Result<u64, String> {
    let progress = progress_to(tx, i);
    remote.upload(cache, key, &Transfer { progress: &progress, cancel: &CANCELLED }).map_err(|e| e.to_string())
}

/// A progress callback that tells the coordinator about node `i`, at most
/// once per MiB moved.
fn progress_to(tx: &mpsc::Sender<Message>, i: usize) -> impl Fn(u64, u64) + Sync {
    let last = AtomicU64::new(u64::MAX);
    let tx = tx.clone();
    move |done, total| {
        let mib = done >> 20;
        if last.swap(mib, Ordering::Relaxed) != mib || done == total {
            let _ = tx.send(Message::Progress(i, Progress::Position { done, total }));
        }
    }
}

/// What `scalemake push` did with one node.
#[derive(Debug)]
pub enum Pushed {
    /// Uploaded now (bytes).
    Uploaded(u64),
    /// The remote already had its key.
    AlreadyThere,
    /// Not built here (nothing to push).
    NotBuilt,
    /// The upload failed.
    Failed(String),
}

/// Uploads the built artifacts of `targets` that the remote lacks.
pub fn push(
    plan: &Plan,
    ws: &Workspace<'_>,
    remote: &Remote,
    targets: &[String],
) -> Result<Vec<(String, Pushed)>, ExecError> {
    let selected = selection(plan, targets)?;
    let on_remote = remote.keys()?;
    let survey = survey(plan, ws);
    let (tx, _rx) = mpsc::channel();
    let mut out = Vec::new();
    for &i in plan.topo_order().iter().filter(|i| selected.contains(i)) {
        let pushed = match &survey[i] {
            Freshness::Fresh { key, .. } if on_remote.contains(key) => Pushed::AlreadyThere,
            Freshness::Fresh { key, .. } => match upload(remote, ws.cache, i, key, &tx) {
                Ok(bytes) => Pushed::Uploaded(bytes),
                Err(e) => Pushed::Failed(e),
            },
            _ => Pushed::NotBuilt,
        };
        out.push((plan.experiment.nodes[i].id.0.clone(), pushed));
    }
    Ok(out)
}

/// What `scalemake pull` did with one node.
#[derive(Debug)]
pub enum Pulled {
    /// Fetched and verified now (bytes).
    Fetched(u64),
    /// Already in the local cache.
    Fresh,
    /// Its key is known but the remote does not have it.
    NotOnRemote,
    /// Its key depends on inputs that are neither here nor on the remote.
    Unknown,
    /// The fetch failed or the copy was rejected.
    Failed(String),
}

/// Fetches the artifacts of `targets` that the remote has, upstream first:
/// each round's fetches make the keys of the next round's nodes known.
pub fn pull(
    plan: &Plan,
    ws: &Workspace<'_>,
    remote: &Remote,
    targets: &[String],
) -> Result<Vec<(String, Pulled)>, ExecError> {
    let selected = selection(plan, targets)?;
    let on_remote = remote.keys()?;
    let (tx, _rx) = mpsc::channel();
    let mut decided: std::collections::BTreeMap<usize, Pulled> = std::collections::BTreeMap::new();
    loop {
        let survey = survey(plan, ws);
        let mut fetched_any = false;
        let pending: Vec<usize> =
            plan.topo_order().iter().copied().filter(|i| selected.contains(i) && !decided.contains_key(i)).collect();
        for i in pending {
            let pulled = match &survey[i] {
                Freshness::Fresh { .. } => Pulled::Fresh,
                Freshness::Stale { key: Some(key), .. } if on_remote.contains(key) => {
                    match fetch(remote, ws.cache, i, key, &tx) {
                        Ok(f) => {
                            fetched_any = true;
                            Pulled::Fetched(f.bytes)
                        }
                        Err(e) => Pulled::Failed(e),
                    }
                }
                Freshness::Stale { key: Some(_), .. } => Pulled::NotOnRemote,
                Freshness::Stale { key: None, .. } => continue,
                Freshness::Broken { message } => Pulled::Failed(message.clone()),
            };
            decided.insert(i, pulled);
        }
        if !fetched_any || CANCELLED.load(Ordering::Relaxed) {
            break;
        }
    }
    let order = plan.topo_order().iter().filter(|i| selected.contains(i));
    Ok(order.map(|&i| (plan.experiment.nodes[i].id.0.clone(), decided.remove(&i).unwrap_or(Pulled::Unknown))).collect())
}
