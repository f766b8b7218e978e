//! The HTTP side of `serve`: a handful of GET routes over one shared
//! [`Hub`], and server-sent events that push each poll's changes.
//!
//! | route | answer |
//! |---|---|
//! | `/`, `/app.js`, `/style.css` | the page, embedded in the binary (works offline) |
//! | `/api/snapshot` | the whole [`Snapshot`] as JSON |
//! | `/api/events` | SSE: `snapshot` first, then `change` events as polls find them, and a new `snapshot` when the experiment file changes |
//! | `/api/log?node=ID` | the tail of node `ID`'s log; `ID` must be a node of the plan |
//!
//! Nothing else: every other path is 404 and every other method 405, so
//! there is no way to run or change anything. A node id is looked up in
//! the plan, never joined onto a path, so no request can name a file
//! outside the cache's logs.
//!
//! One poller thread serves every client: a change is serialised once and
//! broadcast as shared text, so a client costs a channel receiver and its
//! socket, not a poll of its own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast;

use super::watch::{Change, Logs, Snapshot, Watcher};
use super::ServeError;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Changes a slow client may fall behind by before it is sent a fresh
/// snapshot instead (it never misses a change silently).
const BACKLOG: usize = 256;

/// What the server's threads share: the latest snapshot, kept current by
/// applying each change, and the channel the changes go out on. The poll
/// itself (surveys, reads, refits) runs outside it, on the poller's thread,
/// so a page never waits for a poll.
pub struct Hub {
    view: Mutex<Published>,
    changes: broadcast::Sender<Sent>,
}

/// An SSE event as every page gets it: its name (`change` or `snapshot`)
/// and its JSON, serialised once for all of them.
type Sent = (&'static str, Arc<str>);

/// The snapshot and its JSON, serialised once per change rather than once
/// per request: with 50 pages asking, serialising every long run's points
/// for each of them was most of what watching cost the study. With the
/// plan's logs, which change with it.
struct Published {
    snapshot: Snapshot,
    json: Option<Arc<str>>,
    logs: Arc<Logs>,
}

impl Published {
    fn json(&mut self) -> Arc<str> {
        let snapshot = &self.snapshot;
        self.json.get_or_insert_with(|| serde_json::to_string(snapshot).unwrap_or_else(|_| "{}".into()).into()).clone()
    }
}

impl Hub {
    /// A hub showing what `watcher` has seen so far.
    pub fn new(watcher: &Watcher) -> Arc<Self> {
        let (changes, _) = broadcast::channel(BACKLOG);
        let view = Mutex::new(Published { snapshot: watcher.snapshot(), json: None, logs: Arc::new(watcher.logs()) });
        Arc::new(Hub { view, changes })
    }

    fn view(&self) -> std::sync::MutexGuard<'_, Published> {
        // A panic while applying a change leaves a usable snapshot at worst one change behind.
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `changes` to the snapshot and sends each to every connected page.
    pub fn publish(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        let mut view = self.view();
        view.json = None;
        for change in changes {
            view.snapshot.apply(&change);
            if let Ok(json) = serde_json::to_string(&change) {
                // No receiver (no page open) is not an error.
                let _ = self.changes.send(("change", json.into()));
            }
        }
    }

    /// Shows `watcher`'s study instead (the experiment file changed): every
    /// page gets the new snapshot and starts over from it.
    pub fn replace(&self, watcher: &Watcher) {
        let mut view = self.view();
        *view = Published { snapshot: watcher.snapshot(), json: None, logs: Arc::new(watcher.logs()) };
        let _ = self.changes.send(("snapshot", view.json()));
    }

    /// The snapshot as JSON and a receiver of every change after it (taken
    /// under one lock, so that no change falls between them).
    fn subscribe(&self) -> (Arc<str>, broadcast::Receiver<Sent>) {
        let mut view = self.view();
        (view.json(), self.changes.subscribe())
    }
}

/// Polls `watcher` every `interval` on a thread of its own and publishes
/// what changed, for as long as the process runs. Before each poll,
/// `reload` may hand over a watcher of a new plan (the experiment file was
/// edited), which then replaces the old one.
pub fn start_poller(
    hub: Arc<Hub>,
    mut watcher: Watcher,
    interval: Duration,
    mut reload: impl FnMut() -> Option<Watcher> + Send + 'static,
) {
    std::thread::Builder::new()
        .name("serve-poller".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            if let Some(fresh) = reload() {
                watcher = fresh;
                hub.replace(&watcher);
            }
            hub.publish(watcher.poll());
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!("cannot start the poller: {e}"));
}

/// The routes (see the module doc).
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/api/snapshot", get(snapshot))
        .route("/api/events", get(events))
        .route("/api/log", get(log))
        .with_state(hub)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn snapshot(State(hub): State<Arc<Hub>>) -> Response {
    let json = hub.view().json();
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json.to_string()).into_response()
}

async fn events(State(hub): State<Arc<Hub>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (snapshot, receiver) = hub.subscribe();
    let first = Event::default().event("snapshot").data(&*snapshot);
    let rest = stream::unfold((receiver, hub), |(mut receiver, hub)| async move {
        let event = match receiver.recv().await {
            Ok((name, data)) => Event::default().event(name).data(&*data),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Too far behind to catch up change by change: start it over.
                let (snapshot, fresh) = hub.subscribe();
                receiver = fresh;
                Event::default().event("snapshot").data(&*snapshot)
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), (receiver, hub)))
    });
    Sse::new(stream::once(async { Ok(first) }).chain(rest)).keep_alive(KeepAlive::default())
}

#[derive(serde::Deserialize)]
struct LogQuery {
    node: String,
}

async fn log(State(hub): State<Arc<Hub>>, Query(query): Query<LogQuery>) -> Response {
    let logs = hub.view().logs.clone();
    match logs.tail(&query.node) {
        None => (StatusCode::NOT_FOUND, "no such node\n").into_response(),
        Some(None) => (StatusCode::NOT_FOUND, "no log yet: the node has not run in this cache\n").into_response(),
        Some(Some(text)) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
    }
}

/// Binds `addr` and serves until the process ends. `ready` is called with
/// the bound address (the port is chosen by the system when 0).
pub fn serve(hub: Arc<Hub>, addr: SocketAddr, ready: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    // Two threads serve 50 clients with a p99 of 10 ms (benches/serve.rs);
    // more would only compete with the study's training for cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .enable_time()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| ServeError::Bind { addr, source: e })?;
        let bound = listener.local_addr().map_err(|e| ServeError::Bind { addr, source: e })?;
        ready(bound);
        axum::serve(listener, router(hub)).await.map_err(ServeError::Serve)
    })
}
