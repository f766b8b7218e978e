//! The remote cache: artifacts shared by key between machines and people,
//! through a shared directory (`file:///path`, NFS or Lustre) or
//! S3-compatible storage (`s3://bucket/prefix`), both through `object_store`.
//!
//! ```text
//! <prefix>/
//!   manifests/<key>.json        published last: the object is complete iff this exists
//!   data/<key>/<artifact>/<path> the artifact's files (`<artifact>`: its digest's first 16 hex digits)
//!   data/<key>/<artifact>.log    the build's log
//!   used/<key>                  rewritten by every fetch: the LRU order of `gc --remote`
//! ```
//!
//! Invariants:
//! - Every object store write is atomic (an S3 PUT, a completed multipart
//!   upload, a local temporary file renamed), and the manifest is written
//!   only after every data file: a killed upload leaves data that nothing
//!   points to, never a manifest another machine would follow.
//! - Data lives under the artifact digest, so two machines uploading the
//!   same key at once write either identical bytes or separate
//!   directories; whichever manifest lands last points at a complete one.
//! - Nothing read from the remote is trusted: a fetched artifact is staged
//!   in the local cache and committed by [`Cache::commit_copy`], which
//!   re-digests it and refuses it unless it is exactly what the manifest says.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart};
use serde::{Deserialize, Serialize};

use super::{fault, Cache, CacheError, KeyLock, Manifest};
use crate::hash::ContentHash;

/// Files up to this size go up in one PUT; larger ones as multipart uploads
/// of parts of this size (S3's minimum part is 5 MiB).
const PART: usize = 8 << 20;
/// Parts of one file in flight at once: with [`PARALLEL_FILES`], bounds an
/// upload's memory to 2 × 4 × 8 MiB.
const PARTS_IN_FLIGHT: usize = 2;
/// Files of one artifact transferred at once.
const PARALLEL_FILES: usize = 4;

/// Why the remote could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The URL is not one we can open.
    #[error("remote `{url}`: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A request to the store failed (after its retries).
    #[error("remote {url}: {source}")]
    Store {
        /// The remote.
        url: String,
        /// The store's error (it names the object).
        source: object_store::Error,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The remote's object is damaged or malformed; it was not used.
    #[error("remote copy of {key} is corrupt: {reason}")]
    Corrupt {
        /// The key (short form).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The local cache failed (staging or committing the copy).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Ctrl-C stopped the transfer.
    #[error("cancelled")]
    Cancelled,
    /// An upload or removal on a read-only remote.
    #[error("remote {0} is read-only here (--remote-read-only)")]
    ReadOnly(String),
}

type Result<T> = std::result::Result<T, RemoteError>;

/// What `manifests/<key>.json` holds: the local manifest, plus the file
/// types that the manifest's digests do not spell out but the tree digest
/// covers (executable bits, symlinks, empty directories).
#[derive(Serialize, Deserialize)]
struct Published {
    manifest: Manifest,
    tree: Vec<Entry>,
}

/// One entry of an artifact's `out/` tree.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Entry {
    File { path: String, executable: bool },
    Dir { path: String },
    Link { path: String, target: String },
}

/// One key stored on the remote, for `gc --remote`.
#[derive(Clone, Debug)]
pub struct RemoteObject {
    /// Its key.
    pub key: ContentHash,
    /// Bytes of its data and manifest.
    pub bytes: u64,
    /// When it was last uploaded or fetched.
    pub last_used: SystemTime,
    /// Its manifest exists (else: data left by an upload that never finished).
    pub published: bool,
}

/// How a transfer reports and stops.
pub struct Transfer<'a> {
    /// Called with (bytes done, bytes in all) as data moves.
    pub progress: &'a (dyn Fn(u64, u64) + Sync),
    /// Checked between chunks: set, the transfer stops with [`RemoteError::Cancelled`].
    pub cancel: &'a AtomicBool,
}

/// An open remote cache.
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
    read_only: bool,
    /// A `file://` remote's directory. object_store writes each file there
    /// under a staging name (`name#N`) and renames it when complete; it
    /// hides those names from listings, so what a killed upload left is
    /// found by walking the directory ([`Remote::partial_files`]).
    local_root: Option<std::path::PathBuf>,
    /// object_store is async; the rest of scalemake is threads. Each
    /// blocking call runs its futures on this small runtime.
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({}{})", self.url, if self.read_only { ", read-only" } else { "" })
    }
}

impl Remote {
    /// Opens `file:///path` (created if missing) or `s3://bucket[/prefix]`.
    /// S3 settings come from the usual `AWS_*` variables (`AWS_ENDPOINT_URL`
    /// and `AWS_ALLOW_HTTP=true` for a MinIO- or Ceph-style server), else
    /// from `~/.aws/credentials` and `~/.aws/config` (`AWS_PROFILE`).
    pub fn open(url: &str, read_only: bool) -> Result<Self> {
        let bad = |reason: String| RemoteError::Url { url: url.to_string(), reason };
        let mut local_root = None;
        let (store, prefix): (Arc<dyn ObjectStore>, String) = if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("a file:// remote needs an absolute path (file:///shared/cache)".into()));
            }
            fs::create_dir_all(path).map_err(|source| RemoteError::Io { path: path.into(), source })?;
            let store = LocalFileSystem::new_with_prefix(path).map_err(|e| bad(e.to_string()))?.with_fsync(true);
            local_root = Some(path.into());
            (Arc::new(store), String::new())
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket (s3://bucket/prefix)".into()));
            }
            let retry =
                RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(30), ..RetryConfig::default() };
            let builder = aws_profile(AmazonS3Builder::from_env()).with_bucket_name(bucket).with_retry(retry);
            let store = builder.build().map_err(|e| bad(e.to_string()))?;
            (Arc::new(store), prefix.trim_matches('/').to_string())
        } else {
            return Err(bad("unsupported scheme: use file:///path or s3://bucket/prefix".into()));
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("scalemake-remote")
            .on_thread_start(ignore_broken_pipes)
            .enable_all()
            .build()
            .map_err(|source| RemoteError::Io { path: "tokio runtime".into(), source })?;
        Ok(Remote { store, prefix, url: url.to_string(), read_only, local_root, runtime })
    }

    /// The URL it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether uploads and removals are refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    fn at(&self, rel: &str) -> ObjPath {
        ObjPath::from(format!("{}/{rel}", self.prefix))
    }

    fn manifest_path(&self, key: &ContentHash) -> ObjPath {
        self.at(&format!("manifests/{}.json", key.hex()))
    }

    /// Short names: some servers (s3s-fs) turn an object's whole name
    /// into one file name, which may not exceed 255 bytes; 64 bits of the
    /// artifact digest keep two builds of a key apart, and the full digest
    /// is verified after every fetch anyway.
    fn data_dir(&self, key: &ContentHash, artifact: &ContentHash) -> String {
        format!("data/{}/{}", key.hex(), &artifact.hex()[..16])
    }

    fn store_err(&self, source: object_store::Error) -> RemoteError {
        RemoteError::Store { url: self.url.clone(), source }
    }

    /// The keys whose objects are complete (manifest published): one
    /// listing, however many keys.
    pub fn keys(&self) -> Result<HashSet<ContentHash>> {
        let listing = self
            .runtime
            .block_on(self.store.list(Some(&self.at("manifests"))).try_collect::<Vec<_>>())
            .map_err(|e| self.store_err(e))?;
        Ok(listing
            .iter()
            .filter_map(|m| m.location.filename()?.strip_suffix(".json").and_then(ContentHash::from_hex))
            .collect())
    }

    /// Every key with something stored, published or not, with its size
    /// and last use.
    pub fn objects(&self) -> Result<Vec<RemoteObject>> {
        let list = |dir: &'static str| {
            self.runtime
                .block_on(self.store.list(Some(&self.at(dir))).try_collect::<Vec<_>>())
                .map_err(|e| self.store_err(e))
        };
        let key_of = |meta: &object_store::ObjectMeta, dir: &str| -> Option<ContentHash> {
            let rel = meta.location.as_ref().strip_prefix(self.at(dir).as_ref())?.trim_start_matches('/');
            ContentHash::from_hex(rel.split('/').next()?.trim_end_matches(".json"))
        };
        let mut objects: HashMap<ContentHash, RemoteObject> = HashMap::new();
        for (dir, published) in [("manifests", true), ("data", false), ("used", false)] {
            for meta in list(dir)? {
                let Some(key) = key_of(&meta, dir) else { continue };
                let when = SystemTime::from(meta.last_modified);
                let o = objects.entry(key).or_insert(RemoteObject {
                    key,
                    bytes: 0,
                    last_used: SystemTime::UNIX_EPOCH,
                    published: false,
                });
                o.published |= published;
                o.last_used = o.last_used.max(when);
                if dir != "used" {
                    o.bytes += meta.size;
                }
            }
        }
        Ok(objects.into_values().collect())
    }

    /// Fetches `key` into the local cache (the caller holds its lock):
    /// download into staging, verify against the manifest, commit. `Ok(None)`:
    /// the remote does not have it. A damaged copy is
    /// [`RemoteError::Corrupt`] and leaves nothing behind.
    pub fn fetch(
        &self,
        cache: &Cache,
        key: &ContentHash,
        lock: &KeyLock,
        transfer: &Transfer<'_>,
    ) -> Result<Option<Manifest>> {
        let corrupt = |reason: String| RemoteError::Corrupt { key: key.short(), reason };
        let bytes = match self.runtime.block_on(async { self.store.get(&self.manifest_path(key)).await?.bytes().await })
        {
            Ok(bytes) => bytes,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.store_err(e)),
        };
        let published: Published =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("unreadable manifest: {e}")))?;
        let manifest = published.manifest;
        if manifest.key != *key {
            return Err(corrupt(format!("its manifest is for key {}", manifest.key.short())));
        }
        let staging = cache.stage(key, lock)?;
        let out = staging.out_dir();
        let mut files = Vec::new();
        for entry in &published.tree {
            let (Entry::File { path, .. } | Entry::Dir { path } | Entry::Link { path, .. }) = entry;
            if !Path::new(path).components().all(|c| matches!(c, Component::Normal(_))) {
                return Err(corrupt(format!("path `{path}` leads outside the artifact")));
            }
            let local = out.join(path);
            if let Some(parent) = local.parent() {
                fs::create_dir_all(parent).map_err(|source| RemoteError::Io { path: parent.to_path_buf(), source })?;
            }
            let made = match entry {
                Entry::Dir { .. } => fs::create_dir_all(&local),
                Entry::Link { target, .. } => std::os::unix::fs::symlink(target, &local),
                Entry::File { executable, .. } => {
                    let size = manifest.outputs.iter().find(|f| &f.path == path).map_or(0, |f| f.size);
                    files.push((path.clone(), local.clone(), size, *executable));
                    Ok(())
                }
            };
            made.map_err(|source| RemoteError::Io { path: local, source })?;
        }
        let total = files.iter().map(|f| f.2).sum();
        let done = AtomicU64::new(0);
        let base = self.data_dir(key, &manifest.artifact);
        let done = &done;
        self.runtime
            .block_on(futures::stream::iter(files.iter().map(Ok)).try_for_each_concurrent(
                PARALLEL_FILES,
                |(path, local, _, executable)| {
                    let from = self.at(&format!("{base}/{path}"));
                    async move {
                        self.download(&from, local, done, total, transfer).await?;
                        if *executable {
                            use std::os::unix::fs::PermissionsExt;
                            fs::set_permissions(local, fs::Permissions::from_mode(0o755))
                                .map_err(|source| RemoteError::Io { path: local.clone(), source })?;
                        }
                        Ok(())
                    }
                },
            ))
            .map_err(|e| match e {
                RemoteError::Store { source: object_store::Error::NotFound { path, .. }, .. } => {
                    corrupt(format!("{path} is missing"))
                }
                other => other,
            })?;
        // The log is a courtesy: an object without one is still whole.
        let log = staging.dir.join("log.txt");
        let _ = self.runtime.block_on(self.download(
            &self.at(&format!("{base}.log")),
            &log,
            &AtomicU64::new(0),
            0,
            transfer,
        ));
        cache.commit_copy(staging, &manifest).map_err(|e| match e {
            CacheError::Mismatch { reason, .. } | CacheError::EscapingLink { link: reason, .. } => corrupt(reason),
            other => other.into(),
        })?;
        if !self.read_only {
            // Best effort: a missed touch only makes `gc --remote` think it older.
            let _ = self.runtime.block_on(self.store.put(&self.at(&format!("used/{}", key.hex())), Vec::new().into()));
        }
        Ok(Some(manifest))
    }

    /// Streams one object into a new file at `to`.
    async fn download(
        &self,
        from: &ObjPath,
        to: &Path,
        done: &AtomicU64,
        total: u64,
        transfer: &Transfer<'_>,
    ) -> Result<()> {
        let io = |source| RemoteError::Io { path: to.to_path_buf(), source };
        let mut stream = self.store.get(from).await.map_err(|e| self.store_err(e))?.into_stream();
        let mut file = File::create(to).map_err(io)?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.store_err(e))?;
            file.write_all(&chunk).map_err(io)?;
            (transfer.progress)(done.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64, total);
            if transfer.cancel.load(Ordering::Relaxed) {
                return Err(RemoteError::Cancelled);
            }
        }
        Ok(())
    }

    /// Uploads the local object of `key`: data files first, then the log,
    /// then the manifest that makes it visible. Returns the bytes sent.
    pub fn upload(&self, cache: &Cache, key: &ContentHash, transfer: &Transfer<'_>) -> Result<u64> {
        if self.read_only {
            return Err(RemoteError::ReadOnly(self.url.clone()));
        }
        let Some(manifest) = cache.manifest(key)? else {
            return Err(
                CacheError::Io { path: cache.object_dir(key), source: std::io::ErrorKind::NotFound.into() }.into()
            );
        };
        let out = cache.artifact_dir(key);
        let mut tree = Vec::new();
        for entry in walkdir::WalkDir::new(&out).min_depth(1).sort_by_file_name() {
            let entry = entry.map_err(|e| RemoteError::Io { path: out.clone(), source: e.into() })?;
            let path = entry.path().strip_prefix(&out).unwrap_or(entry.path()).to_string_lossy().into_owned();
            let io = |source| RemoteError::Io { path: entry.path().to_path_buf(), source };
            tree.push(if entry.file_type().is_dir() {
                Entry::Dir { path }
            } else if entry.file_type().is_symlink() {
                Entry::Link { path, target: fs::read_link(entry.path()).map_err(io)?.to_string_lossy().into_owned() }
            } else {
                use std::os::unix::fs::PermissionsExt;
                Entry::File {
                    path,
                    executable: entry.metadata().map_err(|e| io(e.into()))?.permissions().mode() & 0o111 != 0,
                }
            });
        }
        let base = self.data_dir(key, &manifest.artifact);
        let files: Vec<&String> =
            tree.iter().filter_map(|e| if let Entry::File { path, .. } = e { Some(path) } else { None }).collect();
        let total = manifest.bytes;
        let done = AtomicU64::new(0);
        self.runtime.block_on(futures::stream::iter(files.into_iter().map(Ok)).try_for_each_concurrent(
            PARALLEL_FILES,
            |path| {
                let (from, to) = (out.join(path), self.at(&format!("{base}/{path}")));
                let done = &done;
                async move { self.upload_file(&from, &to, done, total, transfer).await }
            },
        ))?;
        let log = cache.object_dir(key).join("log.txt");
        if log.is_file() {
            self.runtime.block_on(self.upload_file(
                &log,
                &self.at(&format!("{base}.log")),
                &AtomicU64::new(0),
                0,
                transfer,
            ))?;
        }
        let json = serde_json::to_vec_pretty(&Published { manifest, tree })
            .map_err(|e| RemoteError::Io { path: "manifest.json".into(), source: e.into() })?;
        self.runtime.block_on(self.store.put(&self.manifest_path(key), json.into())).map_err(|e| self.store_err(e))?;
        Ok(total)
    }

    /// Uploads one file: one PUT if small, else a multipart upload read
    /// from disk part by part (bounded memory), aborted on any failure.
    async fn upload_file(
        &self,
        from: &Path,
        to: &ObjPath,
        done: &AtomicU64,
        total: u64,
        transfer: &Transfer<'_>,
    ) -> Result<()> {
        let io = |source| RemoteError::Io { path: from.to_path_buf(), source };
        let mut file = File::open(from).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let advance = |n: usize| (transfer.progress)(done.fetch_add(n as u64, Ordering::Relaxed) + n as u64, total);
        if size <= PART as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes).map_err(io)?;
            let n = bytes.len();
            self.store.put(to, bytes.into()).await.map_err(|e| self.store_err(e))?;
            advance(n);
            return Ok(());
        }
        let upload = self.store.put_multipart(to).await.map_err(|e| self.store_err(e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut parts = 0usize;
        let sent: Result<()> = async {
            loop {
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(|e| self.store_err(e))?;
                let mut part = vec![0u8; PART];
                let n = read_full(&mut file, &mut part).map_err(io)?;
                if n == 0 {
                    return Ok(());
                }
                part.truncate(n);
                writer.put(part.into());
                advance(n);
                parts += 1;
                if parts == 1 {
                    fault::pause(fault::Point::Upload);
                }
                if transfer.cancel.load(Ordering::Relaxed) {
                    return Err(RemoteError::Cancelled);
                }
            }
        }
        .await;
        match sent {
            Ok(()) => writer.finish().await.map(drop).map_err(|e| self.store_err(e)),
            Err(e) => {
                // Best effort: an upload never completed is invisible anyway.
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    /// The staging files of uploads that were killed (`file://` remotes
    /// only: an S3 server expires incomplete multipart uploads itself),
    /// untouched for longer than `age`, with their sizes. A younger one may
    /// belong to an upload still running on another machine.
    pub fn partial_files(&self, age: Duration) -> Vec<(std::path::PathBuf, u64)> {
        let Some(root) = &self.local_root else { return Vec::new() };
        let now = SystemTime::now();
        walkdir::WalkDir::new(root)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file() && is_staging_name(&e.file_name().to_string_lossy()))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                let idle = now.duration_since(meta.modified().ok()?).unwrap_or_default();
                (idle > age).then(|| (e.into_path(), meta.len()))
            })
            .collect()
    }

    /// Removes a file [`Remote::partial_files`] found.
    pub fn remove_partial_file(&self, path: &Path) -> Result<()> {
        if self.read_only {
            return Err(RemoteError::ReadOnly(self.url.clone()));
        }
        match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(RemoteError::Io { path: path.to_path_buf(), source: e })
            }
            _ => Ok(()),
        }
    }

    /// Removes `key` from the remote: the manifest first (it is invisible
    /// from then on), then its data and its use record.
    pub fn remove(&self, key: &ContentHash) -> Result<()> {
        if self.read_only {
            return Err(RemoteError::ReadOnly(self.url.clone()));
        }
        let manifest = self.manifest_path(key);
        let data = self.at(&format!("data/{}", key.hex()));
        let used = self.at(&format!("used/{}", key.hex()));
        self.runtime
            .block_on(async {
                let ok_if_gone = |r: object_store::Result<()>| match r {
                    Err(object_store::Error::NotFound { .. }) => Ok(()),
                    other => other,
                };
                ok_if_gone(self.store.delete(&manifest).await)?;
                let doomed: Vec<_> = self.store.list(Some(&data)).map_ok(|m| m.location).try_collect().await?;
                for path in doomed.into_iter().chain([used]) {
                    ok_if_gone(self.store.delete(&path).await)?;
                }
                Ok(())
            })
            .map_err(|e| self.store_err(e))
    }
}

/// Whether `name` is object_store's staging name for a file being written
/// (`big.bin#3`): `#` and digits only after it, as its listings skip.
fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Blocks SIGPIPE in the runtime's threads, which do the socket writes:
/// scalemake restores SIGPIPE's default (to end quietly under `| head`),
/// so a server dying mid-upload would otherwise kill the whole run instead
/// of failing one write with `EPIPE`.
fn ignore_broken_pipes() {
    // SAFETY: plain libc calls on a local, initialised signal set; they
    // change only this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            m => n += m,
        }
    }
    Ok(n)
}

/// Fills in what the environment left unset from the AWS CLI's files
/// (`~/.aws/credentials`, `~/.aws/config`, profile `$AWS_PROFILE` or
/// `default`): object_store reads only variables.
fn aws_profile(builder: AmazonS3Builder) -> AmazonS3Builder {
    use object_store::aws::AmazonS3ConfigKey as K;
    let Some(home) = std::env::var_os("HOME") else { return builder };
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let aws = Path::new(&home).join(".aws");
    let credentials =
        std::env::var_os("AWS_SHARED_CREDENTIALS_FILE").map_or_else(|| aws.join("credentials"), Into::into);
    let config = std::env::var_os("AWS_CONFIG_FILE").map_or_else(|| aws.join("config"), Into::into);
    let mut settings = ini_section(&credentials, &profile);
    let config_section = if profile == "default" { profile.clone() } else { format!("profile {profile}") };
    settings.extend(ini_section(&config, &config_section));
    let mut builder = builder;
    for (name, key) in [
        ("aws_access_key_id", K::AccessKeyId),
        ("aws_secret_access_key", K::SecretAccessKey),
        ("aws_session_token", K::Token),
        ("region", K::Region),
        ("endpoint_url", K::Endpoint),
    ] {
        if let Some(value) = settings.get(name).filter(|_| builder.get_config_value(&key).is_none()) {
            builder = builder.with_config(key, value);
        }
    }
    builder
}

/// The `key = value` lines of section `[name]` of an INI file (empty if
/// the file or the section is missing).
fn ini_section(path: &Path, name: &str) -> HashMap<String, String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut inside = false;
    let mut out = HashMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == name;
        } else if let Some((k, v)) = line.split_once('=').filter(|_| inside) {
            out.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_files_are_the_staging_files_left_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Remote::open(&format!("file://{}", dir.path().display()), false).unwrap();
        let data = dir.path().join("data/ab12");
        fs::create_dir_all(&data).unwrap();
        let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 86400);
        let write = |name: &str, old: bool| {
            let file = File::create(data.join(name)).unwrap();
            file.set_len(10).unwrap();
            if old {
                file.set_modified(two_days_ago).unwrap();
            }
        };
        write("big.bin#3", true); // what a killed upload left
        write("new.bin#1", false); // an upload that may still be running elsewhere
        write("old.bin", true); // a complete file
        write("run#a1", true); // `#` in a real name: not a staging name
        let day = Duration::from_secs(86400);
        assert_eq!(remote.partial_files(day), [(data.join("big.bin#3"), 10)]);
        remote.remove_partial_file(&data.join("big.bin#3")).unwrap();
        assert!(remote.partial_files(day).is_empty());
        assert!(data.join("new.bin#1").exists() && data.join("old.bin").exists());
        let read_only = Remote::open(&format!("file://{}", dir.path().display()), true).unwrap();
        assert!(matches!(read_only.remove_partial_file(&data.join("new.bin#1")), Err(RemoteError::ReadOnly(_))));
    }

    #[test]
    fn profiles_fill_in_what_the_environment_left_unset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        fs::write(
            &path,
            "[default]\naws_access_key_id = A\n\n[work]\naws_access_key_id = W\naws_secret_access_key=S\n",
        )
        .unwrap();
        let work = ini_section(&path, "work");
        assert_eq!((work["aws_access_key_id"].as_str(), work["aws_secret_access_key"].as_str()), ("W", "S"));
        assert_eq!(ini_section(&path, "default").len(), 1);
        assert!(ini_section(&dir.path().join("missing"), "default").is_empty());
    }

    #[test]
    fn urls_other_than_file_and_s3_are_refused() {
        for url in ["http://x", "file://relative", "s3://", "/plain/path"] {
            assert!(matches!(Remote::open(url, false), Err(RemoteError::Url { .. })), "{url}");
        }
    }
}
