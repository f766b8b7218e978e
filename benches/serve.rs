//! Does watching a study slow it down? Training throughput of one run alone
//! against the same run while `scalemake serve` feeds 50 loopback clients.
//!
//! What it does: builds the data of a small study once (the French test
//! fixture, BPE 400, a nano GPT), then `BENCH_SERVE_PAIRS` (default 3)
//! interleaved pairs of runs — alone, then watched — each a fresh training
//! run (its own seed, so its own key) of `BENCH_SERVE_TOKENS` tokens
//! (default 983,040: 36 s to 6 min on the 2-core VM, by its other load). In a watched run, `serve` starts
//! first and `BENCH_SERVE_CLIENTS` (default 50) clients each keep one
//! server-sent-events stream open and issue a GET every 2 s (the page, its
//! script and style, the snapshot, the run's log, in turn) for as long as
//! the run trains, at least `BENCH_SERVE_SECONDS` (default 30). The clients
//! are threads of this process, so their own cost counts against training
//! too.
//!
//! Reports per run: the mean training throughput from the run's own
//! metrics (`tokens_per_second` of each logged step after the first 5%),
//! the clients' requests, failures (a non-200 answer, an I/O error, an
//! event stream that ended early) and GET latency, the CPU seconds `serve`
//! and the clients used, the load average; then the watched/alone
//! throughput ratio of each pair. On a shared VM separate runs differ by
//! 25% on their own, so then (unless `BENCH_SERVE_TOGGLE_TOKENS=0`) one
//! long run of `BENCH_SERVE_TOGGLE_TOKENS` (default 6M) with the clients on
//! and off in alternate `BENCH_SERVE_WINDOW_SECONDS` (default 8) windows:
//! each watched window's steps/s against its unwatched neighbours'.
//!
//! Run: `cargo bench --bench serve` (builds the workspace's worker too:
//! `cargo build --release --workspace --bins` first).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn scalemake_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SCALEMAKE_BIN") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_BIN_EXE_scalemake"))
}

fn study(tokens: u64, seed: u64) -> String {
    format!(
        "name: watched
nodes:
  corpus: {{kind: corpus, paths: [fr], split: {{val: 0.3, test: 0.2}}}}
  tokenizer: {{kind: tokenizer, input: corpus, vocab_size: 400}}
  shards: {{kind: shards, input: [corpus, tokenizer], shard_tokens: 100000}}
  train:
    kind: train
    input: shards
    model: {{preset: nano, d_model: 64}}
    batch_size: 4
    max_tokens: {tokens}
    eval_points: 12
    eval_tokens: 512
    optim: {{lr: 3e-3, warmup_tokens: 1024}}
    device: cpu
    seed: {seed}
"
    )
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(scalemake_bin());
        cmd.args(args).current_dir(self.dir.path()).env("SCALEMAKE_FILE", "exp.yaml").env_remove("SCALEMAKE_CACHE");
        cmd
    }

    fn run(&self, args: &[&str]) {
        let out = self.command(args).output().expect("run scalemake");
        assert!(out.status.success(), "scalemake {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Mean tokens/s of the train artifact's logged steps after the first 5%.
    fn throughput(&self) -> f64 {
        let out = self.command(&["show", "train"]).output().expect("show");
        let text = String::from_utf8_lossy(&out.stdout);
        let dir = text
            .lines()
            .find_map(|l| l.strip_prefix("artifact ").map(str::trim))
            .unwrap_or_else(|| panic!("no artifact in `show train`:\n{text}"));
        let steps = std::fs::read_to_string(Path::new(dir).join("metrics/steps.jsonl")).expect("steps.jsonl");
        let rates: Vec<f64> = steps
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["tokens_per_second"].as_f64())
            .collect();
        let kept = &rates[rates.len() / 20..];
        kept.iter().sum::<f64>() / kept.len() as f64
    }
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    failures: AtomicU64,
    events: AtomicU64,
    latencies_ms: Mutex<Vec<f64>>,
    failure_notes: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, note: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut notes = self.failure_notes.lock().unwrap();
        if notes.len() < 5 {
            notes.push(note);
        }
    }
}

/// One GET with `Connection: close`; the status code.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let head = String::from_utf8_lossy(&response[..response.len().min(20)]).into_owned();
    Ok(head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0))
}

/// Tells the clients to go: a flag for their GET loops, and their event
/// streams shut down so that their blocking reads return at once (a client
/// that woke up to check a flag would cost the study more than a browser's
/// idle event stream does).
#[derive(Default)]
struct Stop {
    requested: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
}

impl Stop {
    fn requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    fn now(&self) {
        self.requested.store(true, Ordering::Relaxed);
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Registers an event stream; false if the clients were already told to go.
    fn register(&self, stream: &TcpStream) -> std::io::Result<bool> {
        let mut streams = self.streams.lock().unwrap();
        streams.push(stream.try_clone()?);
        Ok(!self.requested())
    }
}

/// One client: an event stream held open, and a GET every 2 s, until `stop`.
fn client(addr: SocketAddr, k: usize, stop: Arc<Stop>, tally: Arc<Tally>) -> Vec<std::thread::JoinHandle<()>> {
    let events = {
        let (stop, tally) = (stop.clone(), tally.clone());
        std::thread::spawn(move || {
            let result = (|| -> std::io::Result<()> {
                let mut stream = TcpStream::connect(addr)?;
                if !stop.register(&stream)? {
                    return Ok(());
                }
                write!(stream, "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf) {
                        Ok(_) | Err(_) if stop.requested() => return Ok(()),
                        Ok(0) => return Err(std::io::Error::other("the event stream ended")),
                        Ok(n) => {
                            let text = String::from_utf8_lossy(&buf[..n]);
                            tally.events.fetch_add(text.matches("\nevent: ").count() as u64, Ordering::Relaxed);
                        }
                        Err(e) => return Err(e),
                    }
                }
            })();
            if let Err(e) = result {
                tally.fail(format!("events: {e}"));
            }
        })
    };
    let gets = std::thread::spawn(move || {
        let paths = ["/", "/app.js", "/style.css", "/api/snapshot", "/api/log?node=train"];
        let mut i = k; // clients start at different paths
                       // Spread the clients' first requests over the 2 s period.
        std::thread::sleep(Duration::from_millis(40 * k as u64 % 2000));
        while !stop.requested() {
            let path = paths[i % paths.len()];
            i += 1;
            let started = Instant::now();
            tally.requests.fetch_add(1, Ordering::Relaxed);
            match get(addr, path) {
                Ok(200) => tally.latencies_ms.lock().unwrap().push(started.elapsed().as_secs_f64() * 1e3),
                // The log may not exist before the node starts: 404 is the documented answer then.
                Ok(404) if path.starts_with("/api/log") => {}
                Ok(status) => tally.fail(format!("GET {path}: {status}")),
                Err(e) => tally.fail(format!("GET {path}: {e}")),
            }
            std::thread::sleep(Duration::from_secs(2).saturating_sub(started.elapsed()));
        }
    });
    vec![events, gets]
}

/// CPU seconds (user + system) this process (the clients' threads) has used.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The 1-minute load average: what else the machine was doing.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split(' ').next()?.parse().ok()).unwrap_or(f64::NAN)
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn start_serve(p: &Project) -> (Child, SocketAddr) {
    let mut child = p.command(&["serve", "--port", "0"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&line).into_owned();
    let addr = line.split("http://").nth(1).and_then(|s| s.split('/').next()).expect(&line).parse().expect(&line);
    (child, addr)
}

struct Measured {
    throughput: f64,
    seconds: f64,
    requests: u64,
    failures: u64,
    events: u64,
    p50_ms: f64,
    p99_ms: f64,
    serve_cpu: f64,
    clients_cpu: f64,
    load: f64,
}

fn measure(p: &Project, seed: u64, tokens: u64, clients: Option<(usize, Duration)>) -> Measured {
    std::fs::write(p.dir.path().join("exp.yaml"), study(tokens, seed)).unwrap();
    let clients_cpu_before = own_cpu_seconds();
    let watched = clients.map(|(n, min)| {
        let (serve, addr) = start_serve(p);
        let (stop, tally) = (Arc::new(Stop::default()), Arc::new(Tally::default()));
        let threads: Vec<_> = (0..n).flat_map(|k| client(addr, k, stop.clone(), tally.clone())).collect();
        (serve, stop, tally, threads, min)
    });
    let started = Instant::now();
    p.run(&["run", "-j", "1"]);
    let seconds = started.elapsed().as_secs_f64();
    let mut m = Measured {
        throughput: p.throughput(),
        seconds,
        requests: 0,
        failures: 0,
        events: 0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        serve_cpu: 0.0,
        clients_cpu: 0.0,
        load: load_average(),
    };
    if let Some((mut serve, stop, tally, threads, min)) = watched {
        // The clients stay at least `min`, however quick the run.
        std::thread::sleep(min.saturating_sub(started.elapsed()));
        stop.now();
        threads.into_iter().for_each(|t| t.join().unwrap());
        m.serve_cpu = cpu_seconds(serve.id());
        m.clients_cpu = own_cpu_seconds() - clients_cpu_before;
        let _ = serve.kill();
        let _ = serve.wait();
        let mut lat = tally.latencies_ms.lock().unwrap().clone();
        lat.sort_by(f64::total_cmp);
        let at = |q: f64| lat.get(((lat.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
        (m.p50_ms, m.p99_ms) = (at(0.5), at(0.99));
        m.requests = tally.requests.load(Ordering::Relaxed);
        m.failures = tally.failures.load(Ordering::Relaxed);
        m.events = tally.events.load(Ordering::Relaxed);
        for note in tally.failure_notes.lock().unwrap().iter() {
            println!("  failure: {note}");
        }
    }
    m
}

/// The key of the study's `train` node, from `show`.
fn train_key(p: &Project) -> String {
    let out = p.command(&["show", "train"]).output().expect("show");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("key").map(|k| k.trim().to_string()))
        .unwrap_or_else(|| panic!("no key in `show train`:\n{text}"))
}

/// Steps the running node has logged so far: lines of its work directory's
/// steps.jsonl (0 before the worker writes it).
fn steps_logged(p: &Project, key: &str) -> usize {
    let path = p.dir.path().join("cache/work").join(key).join("steps.jsonl");
    std::fs::read(path).map_or(0, |bytes| bytes.iter().filter(|&&b| b == b'\n').count())
}

/// One long run, watched and unwatched in alternate windows of `window`:
/// `serve` runs throughout, the clients come and go. Slow drifts of the
/// machine's speed hit neighbouring windows alike, so each watched window
/// is compared with the mean of the unwatched ones on either side.
fn toggled(p: &Project, tokens: u64, clients: usize, window: Duration) {
    std::fs::write(p.dir.path().join("exp.yaml"), study(tokens, 1000)).unwrap();
    let key = train_key(p);
    let (mut serve, addr) = start_serve(p);
    let mut run = p.command(&["run", "-j", "1"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // The first windows start once the run is past its start-up and first evaluation.
    while steps_logged(p, &key) < 50 {
        assert!(run.try_wait().unwrap().is_none(), "the run ended before its first 50 steps");
        std::thread::sleep(Duration::from_millis(50));
    }
    let tally = Arc::new(Tally::default());
    let clients_cpu_before = own_cpu_seconds();
    let toggling = Instant::now();
    // (watched, steps per second) per window.
    let mut windows: Vec<(bool, f64)> = Vec::new();
    let mut watched = false;
    loop {
        let (start, steps_before) = (Instant::now(), steps_logged(p, &key));
        let stop = Arc::new(Stop::default());
        let threads: Vec<_> = if watched {
            (0..clients).flat_map(|k| client(addr, k, stop.clone(), tally.clone())).collect()
        } else {
            Vec::new()
        };
        while start.elapsed() < window && run.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (seconds, steps) = (start.elapsed().as_secs_f64(), steps_logged(p, &key) - steps_before);
        stop.now();
        threads.into_iter().for_each(|t| t.join().unwrap());
        if run.try_wait().unwrap().is_some() {
            break; // the last, partial window is not counted
        }
        windows.push((watched, steps as f64 / seconds));
        watched = !watched;
    }
    let (serve_cpu, clients_cpu) = (cpu_seconds(serve.id()), own_cpu_seconds() - clients_cpu_before);
    let _ = serve.kill();
    let _ = serve.wait();
    let ratios: Vec<f64> = (1..windows.len().saturating_sub(1))
        .filter(|&i| windows[i].0)
        .map(|i| windows[i].1 / ((windows[i - 1].1 + windows[i + 1].1) / 2.0))
        .collect();
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let rates = |w: bool| windows.iter().filter(|x| x.0 == w).map(|x| x.1).collect::<Vec<f64>>();
    let (on, off) = (rates(true), rates(false));
    println!(
        "one run of {tokens} tokens, {clients} clients on and off in alternate {:.0} s windows ({} watched, {} not); \
         {} requests, {} failed; over {:.0} s serve used {serve_cpu:.1} CPU-seconds, the clients {clients_cpu:.1}",
        window.as_secs_f64(),
        on.len(),
        off.len(),
        tally.requests.load(Ordering::Relaxed),
        tally.failures.load(Ordering::Relaxed),
        toggling.elapsed().as_secs_f64()
    );
    println!("steps/s per window, unwatched: {}", off.iter().map(|r| format!("{r:.1}")).collect::<Vec<_>>().join(", "));
    println!("steps/s per window, watched:   {}", on.iter().map(|r| format!("{r:.1}")).collect::<Vec<_>>().join(", "));
    println!(
        "watched / neighbouring unwatched: median {:.3}, mean {:.3}, range {:.3}–{:.3} over {} windows; \
         all watched / all unwatched {:.3}",
        sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN),
        mean(&ratios),
        sorted.first().copied().unwrap_or(f64::NAN),
        sorted.last().copied().unwrap_or(f64::NAN),
        ratios.len(),
        mean(&on) / mean(&off)
    );
}

fn main() {
    let pairs: u64 = env_or("BENCH_SERVE_PAIRS", 3);
    let tokens: u64 = env_or("BENCH_SERVE_TOKENS", 983_040);
    let clients: usize = env_or("BENCH_SERVE_CLIENTS", 50);
    let seconds: u64 = env_or("BENCH_SERVE_SECONDS", 30);
    let worker = scalemake_bin().with_file_name("scalemake-torch");
    assert!(worker.exists(), "{} missing: cargo build --release --workspace --bins", worker.display());

    let p = Project { dir: tempfile::tempdir().expect("temp dir") };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fr");
    std::fs::create_dir_all(p.dir.path().join("fr")).unwrap();
    for entry in std::fs::read_dir(fixtures).unwrap().flatten() {
        std::fs::copy(entry.path(), p.dir.path().join("fr").join(entry.file_name())).unwrap();
    }
    std::fs::write(p.dir.path().join("exp.yaml"), study(tokens, 0)).unwrap();
    p.run(&["run", "shards"]);
    println!(
        "one nano GPT (d_model 64), {tokens} tokens per run, libtorch's default threads; {pairs} pairs; \
         watched = {clients} clients × (1 event stream + 1 GET / 2 s) for ≥ {seconds} s"
    );
    println!(
        "| run | tokens/s | wall s | load avg | requests | failed | events received | GET p50 / p99 ms | serve CPU s | clients CPU s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for pair in 0..pairs {
        let alone = measure(&p, 2 * pair + 1, tokens, None);
        println!(
            "| alone | {:.0} | {:.1} | {:.1} | – | – | – | – | – | – |",
            alone.throughput, alone.seconds, alone.load
        );
        let watched = measure(&p, 2 * pair + 2, tokens, Some((clients, Duration::from_secs(seconds))));
        println!(
            "| watched | {:.0} | {:.1} | {:.1} | {} | {} | {} | {:.1} / {:.1} | {:.2} | {:.2} |",
            watched.throughput,
            watched.seconds,
            watched.load,
            watched.requests,
            watched.failures,
            watched.events,
            watched.p50_ms,
            watched.p99_ms,
            watched.serve_cpu,
            watched.clients_cpu
        );
        ratios.push(watched.throughput / alone.throughput);
    }
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    println!("watched / alone throughput per pair: {}", shown.join(", "));
    let toggle_tokens: u64 = env_or("BENCH_SERVE_TOGGLE_TOKENS", 6_000_000);
    if toggle_tokens > 0 {
        toggled(&p, toggle_tokens, clients, Duration::from_secs(env_or("BENCH_SERVE_WINDOW_SECONDS", 8)));
    }
}
