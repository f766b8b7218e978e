//! `scalemake serve` as a person uses it: the real server started beside a
//! study that trains, the page opened in Debian's headless Chromium (which
//! `scripts/test.sh` installs), driven through the DevTools protocol; and
//! requests that try to leave the cache, or to change anything.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Project;
use serde_json::{json, Value};

/// Three runs of 800 steps, evaluated 10 times, then a fit: long enough on
/// two busy cores for a page to see several polls' worth of points land.
const STUDY: &str = "
name: live
nodes:
  corpus: {kind: corpus, paths: [fr], split: {val: 0.3, test: 0.2}}
  tokenizer: {kind: tokenizer, input: corpus, vocab_size: 400}
  shards: {kind: shards, input: [corpus, tokenizer], shard_tokens: 100000}
  train:
    kind: train
    input: shards
    matrix: {width: [32, 48, 64]}
    model: {preset: nano, d_model: \"${width}\"}
    batch_size: 4
    max_tokens: 204800
    eval_points: 10
    eval_tokens: 512
    optim: {lr: 3e-3, warmup_tokens: 1024}
    device: cpu
    threads: 1
  laws: {kind: fit, input: train, bootstrap: 0}
";

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `scalemake serve` on a free port; returns it and the address it printed.
fn start_serve(p: &Project, extra: &[&str]) -> (Killed, SocketAddr) {
    let mut args = vec!["serve", "--port", "0"];
    args.extend_from_slice(extra);
    let mut child = p.spawn(&args);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let child = Killed(child);
    let line = rx.recv_timeout(Duration::from_secs(60)).expect("serve printed its address");
    let addr = line.split("http://").nth(1).and_then(|s| s.split('/').next()).expect(&line);
    (child, addr.parse().expect(&line))
}

/// The status code and body of one raw HTTP request (the path sent exactly as given).
fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

/// Every file under `dir` with its length and modification time.
fn tree(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out: Vec<_> = walk(dir)
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).unwrap();
            (p, m.len(), m.modified().unwrap())
        })
        .collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
}

#[test]
fn requests_cannot_leave_the_cache_or_change_anything() {
    let p = Project::with_french_corpus(STUDY);
    // Started before anything ran: it must not create the cache.
    let (serve, addr) = start_serve(&p, &[]);
    assert!(addr.ip().is_loopback(), "binds localhost by default: {addr}");
    assert_eq!(request(addr, "GET", "/api/snapshot").0, 200);
    assert!(!p.path().join("cache").exists(), "serve created the cache");
    drop(serve);

    assert_eq!(p.sm(&["run", "corpus"]).code, 0);
    let before = tree(&p.path().join("cache"));
    let (_serve, addr) = start_serve(&p, &[]);
    let (status, log) = request(addr, "GET", "/api/log?node=corpus");
    assert_eq!(status, 200, "{log}");
    assert!(log.contains("scalemake: node finished"), "{log}");
    for path in [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "//etc/passwd",
        "/api/log?node=../../../../../etc/passwd",
        "/api/log?node=%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/api/log?node=/etc/passwd",
        "/api/log?node=%2Fetc%2Fpasswd",
        "/api/log?node=../state/live",
        "/api/log?node=corpus/../../state/live.log",
        "/api/snapshot/../../Cargo.toml",
        "/exp.yaml",
        "/cache/state/live.log",
    ] {
        let (status, body) = request(addr, "GET", path);
        assert!(status == 404 || status == 400, "GET {path}: {status}\n{body}");
        assert!(!body.contains("root:") && !body.contains("corpus"), "GET {path} leaked: {body}");
    }
    assert_eq!(request(addr, "GET", "/api/log").0, 400, "a log request names a node");
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in ["/", "/api/snapshot", "/api/log?node=corpus", "/api/events"] {
            assert_eq!(request(addr, method, path).0, 405, "{method} {path}");
        }
    }
    assert_eq!(tree(&p.path().join("cache")), before, "serve wrote to the cache");
}

/// The node ids of the snapshot `serve` at `addr` shows.
fn node_ids(addr: SocketAddr) -> Vec<String> {
    let (status, body) = request(addr, "GET", "/api/snapshot");
    assert_eq!(status, 200, "{body}");
    let snapshot: Value = serde_json::from_str(&body).expect("snapshot JSON");
    snapshot["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn an_edited_experiment_file_is_served_without_a_restart() {
    let one = "name: edited\nnodes:\n  a: {kind: command, cmd: 'echo a > $OUT/a'}\n";
    let p = Project::new(one);
    let (mut serve, addr) = start_serve(&p, &[]);
    let stderr = BufReader::new(serve.0.stderr.take().unwrap());
    let (said, lines) = mpsc::channel();
    std::thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|l| drop(said.send(l))));
    // A page open before the edit: its event stream starts with a snapshot.
    let mut page = TcpStream::connect(addr).unwrap();
    page.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(page, "GET /api/events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut events = BufReader::new(page).lines().map_while(Result::ok);
    let mut next_snapshot = move || {
        events.by_ref().find(|l| l == "event: snapshot").expect("a snapshot event");
        events.next().expect("its data")
    };
    assert!(next_snapshot().contains("\"id\":\"a\""));
    assert_eq!(node_ids(addr), ["a"]);

    p.write("exp.yaml", &format!("{one}  b: {{kind: command, input: a, cmd: 'cat $IN/a > $OUT/b'}}\n"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while node_ids(addr) != ["a", "b"] {
        assert!(Instant::now() < deadline, "the added node never showed: {:?}", node_ids(addr));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(next_snapshot().contains("\"id\":\"b\""), "the open page was sent the new study");

    // An edit that does not load: serve says why and keeps the last good plan.
    p.write("exp.yaml", "name: edited\nnodes:\n  a: {kind: nope}\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen: Vec<String> = Vec::new();
    // Its diagnostic, then the line saying what serve does about it.
    while !(seen.iter().any(|l| l.contains("unknown node kind `nope`"))
        && seen.last().is_some_and(|l| l.contains("changed but does not load; still serving the last plan")))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        seen.push(lines.recv_timeout(left).unwrap_or_else(|_| panic!("no word of the broken edit: {seen:?}")));
    }
    assert_eq!(node_ids(addr), ["a", "b"]);
}

/// One page of a headless Chromium, driven through the DevTools protocol.
struct Page {
    socket: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
    _browser: Killed,
}

impl Page {
    /// Starts Chromium on `url` with its own profile under `dir` and attaches to the page.
    fn open(chromium: &str, dir: &Path, url: &str) -> Page {
        let profile = dir.join("chromium-profile");
        let browser = Killed(
            Command::new(chromium)
                .args(common::HEADLESS_CHROMIUM)
                .args(["--remote-debugging-port=0", "--window-size=1400,1500", "--hide-scrollbars"])
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg(url)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start Chromium"),
        );
        // Chromium writes the port it chose, then the browser's socket path.
        let port_file = profile.join("DevToolsActivePort");
        let port = poll(Duration::from_secs(60), "DevToolsActivePort", || {
            let text = std::fs::read_to_string(&port_file).ok()?;
            text.lines().next()?.trim().parse::<u16>().ok()
        });
        let target = poll(Duration::from_secs(60), "the page's target", || {
            let body = ureq::get(format!("http://127.0.0.1:{port}/json/list"))
                .call()
                .ok()?
                .into_body()
                .read_to_string()
                .ok()?;
            let list: Value = serde_json::from_str(&body).ok()?;
            let page = list
                .as_array()?
                .iter()
                .find(|t| t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url)))?;
            page["webSocketDebuggerUrl"].as_str().map(str::to_string)
        });
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (socket, _) = tungstenite::client(target.as_str(), stream).expect("DevTools websocket");
        Page { socket, next_id: 1, _browser: browser }
    }

    /// Calls a DevTools method and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(tungstenite::Message::text(message)).unwrap();
        loop {
            let reply = self.socket.read().expect("DevTools reply");
            let Ok(text) = reply.to_text() else { continue };
            let value: Value = serde_json::from_str(text).unwrap();
            if value["id"] == id {
                assert!(value.get("error").is_none(), "{method}: {value}");
                return value["result"].clone();
            }
        }
    }

    /// Picks the loss curves shown (`steps`: training, `evals`: validation), as a user does.
    fn pick_series(&mut self, series: &str) {
        self.eval(&format!(
            "{{ const s = document.getElementById('y-series'); s.value = '{series}'; s.dispatchEvent(new Event('change')); }}"
        ));
    }

    /// Evaluates `expression` in the page; its value, as JSON.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true}));
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }
}

/// Calls `f` until it returns something, at most `limit`; panics naming `what`.
fn poll<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the page shows of one run: its node's state in the pipeline, the
/// points on its training curve, and whether the page is still the one loaded.
const LOOK: &str = r#"(() => {
  const run = 'train[width=64]';
  const node = [...document.querySelectorAll('#dag-svg .node')].find(g => g.dataset.node === run);
  const curve = [...document.querySelectorAll('#chart-svg path.curve')].find(p => p.dataset.run === run);
  const row = [...document.querySelectorAll('#runs-table tr')].find(r => r.dataset.run === run);
  return {
    state: node ? node.dataset.state : null,
    points: curve ? Number(curve.dataset.points) : 0,
    row_state: row ? row.children[1].textContent : null,
    marker: window.loadedOnce || null,
    navigations: performance.getEntriesByType('navigation').length,
    connection: document.getElementById('connection')?.dataset.state ?? null,
  };
})()"#;

#[test]
fn the_page_shows_curves_and_states_change_live_in_headless_chromium() {
    // scripts/test.sh installs it as root, as CI runs; elsewhere install it first.
    let chromium = common::chromium();
    let p = common::training_project(STUDY);
    assert_eq!(p.sm(&["run", "shards"]).code, 0, "the data, before the page opens");
    let (_serve, addr) = start_serve(&p, &[]);
    let url = format!("http://{addr}/");
    let mut page = Page::open(&chromium, p.path(), &url);
    poll(Duration::from_secs(30), "the snapshot", || page.eval(LOOK)["state"].is_string().then_some(()));
    // A mark that only survives if the page is never reloaded; the training loss, as a user picks it.
    page.eval("window.loadedOnce = 'yes'");
    page.pick_series("steps");

    // -j 1: the runs train one after the other, so this one waits, builds, then is fresh.
    let mut run = Killed(p.command(&["run", "-j", "1"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    let mut seen_points_while_building = Vec::new();
    let mut states = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let look = page.eval(LOOK);
        let state = look["state"].as_str().unwrap_or_default().to_string();
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        let points = look["points"].as_u64().unwrap();
        if state == "building" && seen_points_while_building.last() != Some(&points) {
            seen_points_while_building.push(points);
        }
        assert_eq!(look["marker"], "yes", "the page was reloaded: {look}");
        assert_eq!(look["navigations"], 1, "{look}");
        if state == "fresh" && points == 800 && look["row_state"] == "fresh" {
            break;
        }
        if let Some(status) = run.0.try_wait().unwrap() {
            assert!(status.success(), "the study failed");
        }
        assert!(Instant::now() < deadline, "the page never showed the run finished: {look}; states {states:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("states shown: {states:?}; points shown while building: {seen_points_while_building:?}");
    assert!(states.contains(&"building".to_string()), "never shown building: {states:?}");
    assert_eq!(states.last().map(String::as_str), Some("fresh"), "{states:?}");
    let growing: Vec<u64> = seen_points_while_building.iter().copied().filter(|&n| n > 0).collect();
    assert!(
        growing.len() >= 3 && growing.windows(2).all(|w| w[0] < w[1]),
        "the curve should gain points in several updates while it trains: {seen_points_while_building:?}"
    );

    // The whole study done: every node fresh, the fit final, then the picture for the README.
    let _ = run.0.wait();
    poll(Duration::from_secs(60), "every node fresh and the final fit", || {
        let done = page.eval(
            "[...document.querySelectorAll('#dag-svg .node')].every(g => g.dataset.state === 'fresh') \
             && document.getElementById('fits').textContent.includes('final')",
        );
        (done == true).then_some(())
    });
    page.pick_series("evals");
    let shot = page.call("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true}));
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a screenshot of {} bytes", png.len());
    // SCALEMAKE_SERVE_SCREENSHOT=docs/serve.png refreshes the README's picture.
    let out =
        std::env::var("SCALEMAKE_SERVE_SCREENSHOT").map(PathBuf::from).unwrap_or_else(|_| p.path().join("serve.png"));
    std::fs::write(&out, png).unwrap();
}
