//! MLflow tracking: a run's params, metrics and final artifact files on an
//! MLflow tracking server, through its REST API 2.0 (`/api/2.0/mlflow/…`;
//! files through the server's artifact proxy, `/api/2.0/mlflow-artifacts/…`,
//! which `mlflow server` serves by default).
//!
//! **One MLflow run per node key.** The run carries the tag
//! [`KEY_TAG`]` = <key>`; before creating one, the experiment is searched
//! for it, so a resumed attempt (after `kill -9`, a Slurm requeue, a
//! re-attached `run`) continues the same MLflow run instead of starting a
//! second one. Params are only what the key hashes (and what follows from
//! it), because MLflow refuses to change a logged param: metadata such as
//! `device` or `threads` may differ between attempts, so they are tags.
//!
//! **Each step once.** MLflow keeps every (step, timestamp) it is sent, so a
//! step logged twice shows twice. A continued run first reads the last step
//! the server holds per metric and skips live rows up to it (a resumed
//! worker replays the steps after its checkpoint, bit-identical); at the
//! end, the history per metric is compared with the artifact's complete
//! metrics files and only the missing steps are sent — those an earlier
//! attempt had not sent yet when it was killed.
//!
//! **A tracking server never costs the run.** Requests run on a thread of
//! their own, so training never waits on the network; each has a 5 s
//! connect and 30 s overall timeout and is tried [`ATTEMPTS`] times (1 s,
//! then 2 s apart) when the server is unreachable or answers 5xx/429. After
//! that, or on any other error, tracking stops for the run with one warning
//! in the node's log, and training goes on. At the end the node waits for
//! the final uploads (bounded by the same timeouts).
//!
//! Final run status: FINISHED (artifact committed), FAILED, KILLED (Ctrl-C)
//! or SCHEDULED (stopped by Slurm to be requeued; the next attempt sets it
//! RUNNING again). A run killed with SIGKILL stays RUNNING until resumed.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

/// The tag that ties an MLflow run to the node key it tracks.
pub const KEY_TAG: &str = "scalemake.key";
/// Artifact files larger than this are not uploaded (the log says which):
/// a model's weights can be gigabytes that the tracking server's disk was
/// not sized for, and the cache keeps them anyway.
pub const MAX_ARTIFACT_BYTES: u64 = 256 << 20;
/// Tries per request when the server is unreachable or fails on its side.
pub const ATTEMPTS: u32 = 3;
/// How often buffered metrics are sent while the run trains.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Limits of `runs/log-batch` in MLflow's REST API.
const MAX_BATCH_METRICS: usize = 1000;
const MAX_BATCH_PARAMS: usize = 100;
const MAX_BATCH_TAGS: usize = 100;
/// Page size for reading a metric's history back.
const HISTORY_PAGE: u32 = 10_000;

/// Why a request to the tracking server did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The server could not be reached, or the exchange broke off (timeouts included).
    #[error("{url}: {source}")]
    Http {
        /// The request's URL.
        url: String,
        /// Why.
        source: Box<ureq::Error>,
    },
    /// The server answered with an error.
    #[error("{url}: HTTP {status}: {message}")]
    Api {
        /// The request's URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// MLflow's `error_code` and `message`, or the body.
        message: String,
    },
    /// The server answered 200 with a body that is not what the API says.
    #[error("{url}: unexpected answer: {source}")]
    Answer {
        /// The request's URL.
        url: String,
        /// Why it did not parse.
        source: serde_json::Error,
    },
    /// A file to upload could not be read.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The run's artifact store is not the server's proxy, so there is no
    /// URL to upload to (a server started with `--no-serve-artifacts`).
    #[error("the run's artifacts go to `{0}`, which the server does not proxy (start `mlflow server` without --no-serve-artifacts)")]
    NoArtifactProxy(String),
}

impl MlflowError {
    /// Worth another try: the server was unreachable, or failed on its side.
    fn is_transient(&self) -> bool {
        match self {
            MlflowError::Http { .. } => true,
            MlflowError::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// One scalar at one step, as MLflow stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Its name (the TensorBoard tag: `train/loss`, `val/loss`, …).
    pub key: &'static str,
    /// The value (NaN for a diverged run).
    pub value: f64,
    /// The optimiser step.
    pub step: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl Metric {
    /// The REST form. JSON has no NaN or infinity: MLflow's protobuf JSON
    /// reader takes them as the strings `NaN`, `Infinity`, `-Infinity`.
    fn to_json(&self) -> serde_json::Value {
        let value = match self.value {
            v if v.is_finite() => json!(v),
            v if v.is_nan() => json!("NaN"),
            v if v > 0.0 => json!("Infinity"),
            _ => json!("-Infinity"),
        };
        json!({ "key": self.key, "value": value, "step": self.step, "timestamp": self.timestamp_ms })
    }
}

/// An MLflow run as the REST API returns it (the parts used here).
#[derive(Clone, Debug, Deserialize)]
pub struct Run {
    /// Identity, status, where its artifacts go.
    pub info: RunInfo,
    /// Its latest metrics.
    #[serde(default)]
    pub data: RunData,
}

/// `RunInfo` of the REST API.
#[derive(Clone, Debug, Deserialize)]
pub struct RunInfo {
    /// The run's id.
    pub run_id: String,
    /// Its experiment's id.
    pub experiment_id: String,
    /// Where its artifacts go (`mlflow-artifacts:/…` behind the server's proxy).
    pub artifact_uri: String,
    /// RUNNING, FINISHED, FAILED, KILLED or SCHEDULED.
    pub status: String,
}

/// `RunData` of the REST API: the latest value of each metric.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RunData {
    /// One entry per metric: its value at its highest step.
    #[serde(default)]
    pub metrics: Vec<LoggedMetric>,
}

/// A metric point read back from the server (its value is not needed here).
#[derive(Clone, Debug, Deserialize)]
pub struct LoggedMetric {
    /// The metric's name.
    pub key: String,
    /// Its step.
    #[serde(default)]
    pub step: u64,
}

/// A blocking client of one tracking server's REST API.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the server at `uri` (`http://host:port`, maybe with a path prefix).
    pub fn new(uri: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        Client { base: uri.trim_end_matches('/').to_string(), agent }
    }

    fn answer<T: serde::de::DeserializeOwned>(
        url: String,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, MlflowError> {
        let mut response = response.map_err(|e| MlflowError::Http { url: url.clone(), source: Box::new(e) })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| MlflowError::Http { url: url.clone(), source: Box::new(e) })?;
        if status != 200 {
            #[derive(Deserialize)]
            struct ApiError {
                error_code: String,
                message: String,
            }
            let message = match serde_json::from_str::<ApiError>(&body) {
                Ok(e) => format!("{}: {}", e.error_code, e.message),
                Err(_) => body.chars().take(300).collect(),
            };
            return Err(MlflowError::Api { url, status, message });
        }
        let body = if body.trim().is_empty() { "{}" } else { &body };
        serde_json::from_str(body).map_err(|source| MlflowError::Answer { url, source })
    }

    fn post<T: serde::de::DeserializeOwned>(&self, endpoint: &str, body: serde_json::Value) -> Result<T, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let response = self.agent.post(&url).send_json(&body);
        Self::answer(url, response)
    }

    fn get<T: serde::de::DeserializeOwned>(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<T, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let response = self.agent.get(&url).query_pairs(query.iter().copied()).call();
        Self::answer(url, response)
    }

    /// The id of the experiment called `name`, created if there is none.
    pub fn experiment_id(&self, name: &str) -> Result<String, MlflowError> {
        #[derive(Deserialize)]
        struct Found {
            experiment: Experiment,
        }
        #[derive(Deserialize)]
        struct Experiment {
            experiment_id: String,
        }
        match self.get::<Found>("experiments/get-by-name", &[("experiment_name", name)]) {
            Ok(found) => return Ok(found.experiment.experiment_id),
            Err(MlflowError::Api { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        match self.post::<Experiment>("experiments/create", json!({ "name": name })) {
            Ok(created) => Ok(created.experiment_id),
            // Another client created it in between.
            Err(MlflowError::Api { message, .. }) if message.starts_with("RESOURCE_ALREADY_EXISTS") => {
                Ok(self.get::<Found>("experiments/get-by-name", &[("experiment_name", name)])?.experiment.experiment_id)
            }
            Err(e) => Err(e),
        }
    }

    /// The active run of the experiment whose tag `tag` is `value`, if any.
    pub fn find_run(&self, experiment_id: &str, tag: &str, value: &str) -> Result<Option<Run>, MlflowError> {
        #[derive(Deserialize)]
        struct Found {
            #[serde(default)]
            runs: Vec<Run>,
        }
        let filter = format!("tags.`{tag}` = '{}'", value.replace('\'', "\\'"));
        let body = json!({ "experiment_ids": [experiment_id], "filter": filter, "max_results": 1 });
        Ok(self.post::<Found>("runs/search", body)?.runs.into_iter().next())
    }

    /// A new run, RUNNING, with these tags.
    pub fn create_run(&self, experiment_id: &str, name: &str, tags: &[(String, String)]) -> Result<Run, MlflowError> {
        #[derive(Deserialize)]
        struct Created {
            run: Run,
        }
        let tags: Vec<_> = tags.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
        let body = json!({ "experiment_id": experiment_id, "run_name": name, "start_time": now_ms(), "tags": tags });
        Ok(self.post::<Created>("runs/create", body)?.run)
    }

    /// Sets the run's status; `end` stamps its end time.
    pub fn set_status(&self, run_id: &str, status: &str, end: bool) -> Result<(), MlflowError> {
        let mut body = json!({ "run_id": run_id, "status": status });
        if end {
            body["end_time"] = json!(now_ms());
        }
        self.post::<serde_json::Value>("runs/update", body).map(drop)
    }

    /// Logs metrics, params and tags, in as many batches as MLflow's limits ask.
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), MlflowError> {
        let pairs = |items: &[(String, String)]| -> Vec<serde_json::Value> {
            items.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect()
        };
        let batches = metrics
            .len()
            .div_ceil(MAX_BATCH_METRICS)
            .max(params.len().div_ceil(MAX_BATCH_PARAMS))
            .max(tags.len().div_ceil(MAX_BATCH_TAGS));
        for i in 0..batches {
            let slice = |len: usize, per: usize| (i * per).min(len)..((i + 1) * per).min(len);
            let body = json!({
                "run_id": run_id,
                "metrics": metrics[slice(metrics.len(), MAX_BATCH_METRICS)].iter().map(Metric::to_json).collect::<Vec<_>>(),
                "params": pairs(&params[slice(params.len(), MAX_BATCH_PARAMS)]),
                "tags": pairs(&tags[slice(tags.len(), MAX_BATCH_TAGS)]),
            });
            self.post::<serde_json::Value>("runs/log-batch", body)?;
        }
        Ok(())
    }

    /// The steps at which the run holds `key`, every one (paged).
    pub fn metric_steps(&self, run_id: &str, key: &str) -> Result<Vec<u64>, MlflowError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            metrics: Vec<LoggedMetric>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let mut steps = Vec::new();
        let mut token: Option<String> = None;
        let size = HISTORY_PAGE.to_string();
        loop {
            let mut query = vec![("run_id", run_id), ("metric_key", key), ("max_results", size.as_str())];
            if let Some(t) = &token {
                query.push(("page_token", t));
            }
            let page: Page = self.get("metrics/get-history", &query)?;
            steps.extend(page.metrics.iter().map(|m| m.step));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(steps),
            }
        }
    }

    /// Uploads `file` as `path` (slash-separated) among the run's artifacts,
    /// through the server's artifact proxy.
    pub fn upload(&self, run: &RunInfo, path: &str, file: &Path) -> Result<(), MlflowError> {
        let Some(location) = run.artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(MlflowError::NoArtifactProxy(run.artifact_uri.clone()));
        };
        // `mlflow-artifacts:/1/<run>/artifacts` or, with a host, `mlflow-artifacts://host/1/<run>/artifacts`.
        let location = match location.strip_prefix("//") {
            Some(with_host) => with_host.split_once('/').map_or("", |(_, rest)| rest),
            None => location.trim_start_matches('/'),
        };
        let encoded: Vec<String> = location.split('/').chain(path.split('/')).map(percent_encode).collect();
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{}", self.base, encoded.join("/"));
        let body = File::open(file).map_err(|source| MlflowError::File { path: file.to_path_buf(), source })?;
        let response = self.agent.put(&url).send(body);
        Self::answer::<serde_json::Value>(url, response).map(drop)
    }
}

/// A path segment with everything but RFC 3986's unreserved characters %-escaped.
fn percent_encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Now, in the milliseconds since the Unix epoch that MLflow timestamps are in.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// What run to track, and where.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The tracking server (`http://127.0.0.1:5000`).
    pub server: String,
    /// The MLflow experiment's name (made if missing).
    pub experiment: String,
    /// The run's display name (the node id).
    pub run_name: String,
    /// The node key the run belongs to (value of [`KEY_TAG`]).
    pub key: String,
    /// Params known before training starts.
    pub params: Vec<(String, String)>,
    /// Tags besides [`KEY_TAG`].
    pub tags: Vec<(String, String)>,
}

/// How the tracked training ended.
#[derive(Debug)]
pub enum Ending {
    /// It completed: the artifact's files and its complete metrics (every step once).
    Finished {
        /// The artifact directory, uploaded file by file.
        artifact_dir: PathBuf,
        /// Every metric point of the run, from the artifact's metrics files.
        metrics: Vec<Metric>,
    },
    /// It failed.
    Failed,
    /// The user interrupted it.
    Killed,
    /// Slurm stopped it to requeue it; a later attempt continues the run.
    Suspended,
}

impl Ending {
    fn status(&self) -> &'static str {
        match self {
            Ending::Finished { .. } => "FINISHED",
            Ending::Failed => "FAILED",
            Ending::Killed => "KILLED",
            Ending::Suspended => "SCHEDULED",
        }
    }
}

enum Command {
    Log { params: Vec<(String, String)>, tags: Vec<(String, String)> },
    Metrics(Vec<Metric>),
    End(Ending),
}

/// Tracks one training run in MLflow from a thread of its own; the node
/// sends what it learns and never waits, except for [`Tracker::end`].
pub struct Tracker {
    tx: Option<Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl Tracker {
    /// Starts tracking: finds or creates the run in the background. Notes
    /// and warnings go to `log` (the node's log).
    pub fn start(spec: RunSpec, log: File) -> Self {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || Session::new(spec, log).serve(rx));
        Tracker { tx: Some(tx), thread: Some(thread) }
    }

    /// Logs more params and tags (learnt once the model is built).
    pub fn log(&self, params: Vec<(String, String)>, tags: Vec<(String, String)>) {
        self.send(Command::Log { params, tags });
    }

    /// Logs metric points (sent within [`FLUSH_EVERY`]).
    pub fn metrics(&self, metrics: Vec<Metric>) {
        self.send(Command::Metrics(metrics));
    }

    fn send(&self, command: Command) {
        if let Some(tx) = &self.tx {
            // The thread only stops after `End`: a send cannot fail before it.
            let _ = tx.send(command);
        }
    }

    /// Ends the run: sends what is left (and, when it finished, the missing
    /// steps and the artifact's files), sets its status, waits for all that.
    pub fn end(mut self, ending: Ending) {
        self.finish(ending);
    }

    fn finish(&mut self, ending: Ending) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Command::End(ending));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Tracker {
    /// A node that returns early (an error on the way) ended its run as FAILED.
    fn drop(&mut self) {
        self.finish(Ending::Failed);
    }
}

/// The tracking thread's state.
struct Session {
    spec: RunSpec,
    client: Client,
    log: File,
    /// The attached run; `None` before attaching, and after giving up.
    run: Option<RunInfo>,
    /// Per metric, the highest step the server held when the run was
    /// attached: live rows up to it were sent by an earlier attempt.
    logged_through: HashMap<String, u64>,
    pending: Vec<Metric>,
    gave_up: bool,
}

impl Session {
    fn new(spec: RunSpec, log: File) -> Self {
        let client = Client::new(&spec.server);
        Session { spec, client, log, run: None, logged_through: HashMap::new(), pending: Vec::new(), gave_up: false }
    }

    fn note(&mut self, line: &str) {
        let _ = writeln!(self.log, "scalemake: mlflow: {line}");
    }

    /// Runs `request` up to [`ATTEMPTS`] times while it fails transiently;
    /// a final failure gives tracking up for the run, with one warning.
    fn retrying<T>(&mut self, what: &str, request: impl Fn(&Client) -> Result<T, MlflowError>) -> Option<T> {
        if self.gave_up {
            return None;
        }
        let mut pause = Duration::from_secs(1);
        for attempt in 1..=ATTEMPTS {
            match request(&self.client) {
                Ok(value) => return Some(value),
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                Err(e) => {
                    let tries = if e.is_transient() { format!(" (tried {ATTEMPTS} times)") } else { String::new() };
                    self.note(&format!(
                        "warning: {what} failed{tries}: {e}; tracking stops for this run, training goes on"
                    ));
                    self.gave_up = true;
                    self.run = None;
                    return None;
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    fn serve(mut self, rx: Receiver<Command>) {
        self.attach();
        let mut last_flush = Instant::now();
        loop {
            match rx.recv_timeout(FLUSH_EVERY.saturating_sub(last_flush.elapsed())) {
                Ok(Command::Log { params, tags }) => {
                    if let Some(run_id) = self.run.as_ref().map(|r| r.run_id.clone()) {
                        self.retrying("logging params", |c| c.log_batch(&run_id, &[], &params, &tags));
                    }
                }
                Ok(Command::Metrics(metrics)) => {
                    let through = &self.logged_through;
                    self.pending.extend(metrics.into_iter().filter(|m| through.get(m.key).is_none_or(|&s| m.step > s)));
                }
                Ok(Command::End(ending)) => return self.end(ending),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.end(Ending::Failed),
            }
            // Checked after every command too: a steady stream of them must not hold the flush back.
            if last_flush.elapsed() >= FLUSH_EVERY || self.pending.len() >= MAX_BATCH_METRICS {
                self.flush();
                last_flush = Instant::now();
            }
        }
    }

    /// Finds the key's run or creates it, and logs the spec's params and tags.
    fn attach(&mut self) {
        let spec = self.spec.clone();
        let Some(experiment_id) = self.retrying("finding the experiment", |c| c.experiment_id(&spec.experiment)) else {
            return;
        };
        let Some(found) = self.retrying("searching runs", |c| c.find_run(&experiment_id, KEY_TAG, &spec.key)) else {
            return;
        };
        let mut tags = vec![(KEY_TAG.to_string(), spec.key.clone())];
        tags.extend(spec.tags.iter().cloned());
        let run = match found {
            Some(run) => {
                let id = run.info.run_id.clone();
                self.retrying("reopening the run", |c| c.set_status(&id, "RUNNING", false));
                self.logged_through = run.data.metrics.iter().map(|m| (m.key.clone(), m.step)).collect();
                let through = self.logged_through.values().max().copied().unwrap_or(0);
                self.note(&format!(
                    "continuing run {id} of experiment `{}` at {} (it holds steps up to {through})",
                    spec.experiment, spec.server
                ));
                run
            }
            None => {
                let Some(run) =
                    self.retrying("creating the run", |c| c.create_run(&experiment_id, &spec.run_name, &tags))
                else {
                    return;
                };
                self.note(&format!(
                    "new run {} in experiment `{}` at {}",
                    run.info.run_id, spec.experiment, spec.server
                ));
                run
            }
        };
        let id = run.info.run_id.clone();
        if self.retrying("logging params", |c| c.log_batch(&id, &[], &spec.params, &tags)).is_some() {
            self.run = Some(run.info);
        }
    }

    fn flush(&mut self) {
        let Some(run_id) = self.run.as_ref().map(|r| r.run_id.clone()) else {
            self.pending.clear();
            return;
        };
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.retrying("logging metrics", |c| c.log_batch(&run_id, &pending, &[], &[]));
        }
    }

    fn end(mut self, ending: Ending) {
        self.flush();
        let Some(run) = self.run.clone() else { return };
        if let Ending::Finished { artifact_dir, metrics } = &ending {
            self.send_missing(&run.run_id, metrics);
            self.upload(&run, artifact_dir);
        }
        let status = ending.status();
        if self.retrying("setting the status", |c| c.set_status(&run.run_id, status, true)).is_some() {
            self.note(&format!("run {} is {status}", run.run_id));
        }
    }

    /// Sends the points of `complete` whose step the server does not hold.
    fn send_missing(&mut self, run_id: &str, complete: &[Metric]) {
        let keys: BTreeSet<&'static str> = complete.iter().map(|m| m.key).collect();
        let mut missing = Vec::new();
        for key in keys {
            let Some(held) = self.retrying("reading the history back", |c| c.metric_steps(run_id, key)) else {
                return;
            };
            let held: BTreeSet<u64> = held.into_iter().collect();
            missing.extend(complete.iter().filter(|m| m.key == key && !held.contains(&m.step)).cloned());
        }
        if !missing.is_empty() {
            let count = missing.len();
            if self.retrying("logging missing steps", |c| c.log_batch(run_id, &missing, &[], &[])).is_some() {
                self.note(&format!("sent {count} metric points an earlier attempt had not sent"));
            }
        }
    }

    /// Uploads the artifact's files, but none over [`MAX_ARTIFACT_BYTES`].
    fn upload(&mut self, run: &RunInfo, dir: &Path) {
        let (mut files, mut bytes) = (0, 0);
        for entry in walkdir::WalkDir::new(dir).sort_by_file_name().into_iter().flatten() {
            if !entry.file_type().is_file() {
                continue;
            }
            let Ok(relative) = entry.path().strip_prefix(dir) else { continue };
            let name = relative.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
            let size = entry.metadata().map_or(0, |m| m.len());
            if size > MAX_ARTIFACT_BYTES {
                self.note(&format!(
                    "{name} not uploaded: {size} bytes is over the {} MiB limit (it is in the cache)",
                    MAX_ARTIFACT_BYTES >> 20
                ));
                continue;
            }
            if self.retrying(&format!("uploading {name}"), |c| c.upload(run, &name, entry.path())).is_none() {
                return;
            }
            (files, bytes) = (files + 1, bytes + size);
        }
        self.note(&format!("uploaded {files} artifact files ({bytes} bytes)"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_sent_as_mlflow_reads_them() {
        let point = |value| Metric { key: "train/loss", value, step: 3, timestamp_ms: 7 }.to_json();
        assert_eq!(point(1.5), json!({ "key": "train/loss", "value": 1.5, "step": 3, "timestamp": 7 }));
        assert_eq!(point(f64::NAN)["value"], "NaN");
        assert_eq!(point(f64::INFINITY)["value"], "Infinity");
        assert_eq!(point(f64::NEG_INFINITY)["value"], "-Infinity");
    }

    #[test]
    fn artifact_paths_are_escaped_per_segment() {
        assert_eq!(percent_encode("events.out.tfevents.1.host name"), "events.out.tfevents.1.host%20name");
        assert_eq!(percent_encode("a?b#c"), "a%3Fb%23c");
    }

    #[test]
    fn only_unreachable_servers_and_server_errors_are_retried() {
        let api = |status| MlflowError::Api { url: String::new(), status, message: String::new() };
        assert!(api(503).is_transient() && api(429).is_transient());
        assert!(!api(400).is_transient() && !api(404).is_transient());
        assert!(!MlflowError::NoArtifactProxy("s3://b".into()).is_transient());
    }
}
