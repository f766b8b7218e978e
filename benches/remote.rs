//! Remote cache throughput: uploading and fetching one big artifact through
//! a loopback S3 server (s3s-fs) and a `file://` directory, against a plain
//! file copy of the same bytes.
//!
//! What it does: commits a `BENCH_REMOTE_MIB` (default 512) MiB artifact of
//! pseudo-random bytes into a local cache, then `BENCH_REPS` (default 3)
//! rounds of: `std::fs::copy` of the file (the floor: one read, one write on
//! the same disk), `Remote::upload` to each remote, and `Remote::fetch` of
//! it into an empty cache (download, re-digest against the manifest, fsync,
//! rename: everything `run` does). The S3 server runs on 127.0.0.1 with its
//! storage on the same disk, so S3 pays for HTTP, SigV4 and the server's own
//! copy as well. Prints the median MiB/s of each.
//!
//! Run: `cargo bench --bench remote`. Needs s3s-fs (`scripts/test.sh`
//! installs it; `SCALEMAKE_S3S_FS` to point elsewhere).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use scalemake::cache::remote::{Remote, Transfer};
use scalemake::cache::Cache;
use scalemake::hash::ContentHash;

fn main() {
    let mib: usize = std::env::var("BENCH_REMOTE_MIB").ok().and_then(|s| s.parse().ok()).unwrap_or(512);
    let reps: usize = std::env::var("BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir_in(std::env::current_dir().expect("cwd")).expect("temp dir");
    let server = start_s3s(dir.path());

    let cache = Cache::open(&dir.path().join("cache")).expect("cache");
    let key = ContentHash::of(b"bench");
    let lock = cache.try_lock(&key).expect("lock").expect("free lock");
    let staging = cache.stage(&key, &lock).expect("stage");
    let blob = staging.out_dir().join("weights.bin");
    write_random(&blob, mib);
    cache.commit(staging, None, |m| m.node = "bench".into()).expect("commit");
    drop(lock);
    let source = cache.artifact_dir(&key).join("weights.bin");
    println!("artifact: {mib} MiB of pseudo-random bytes, one file; {reps} rounds; page cache warm");

    let file_url = format!("file://{}", dir.path().join("shared").display());
    let remotes = [
        ("s3 (s3s-fs, loopback)", Remote::open("s3://bench/x", false).expect("s3 remote")),
        ("file://", Remote::open(&file_url, false).expect("file remote")),
    ];
    let (quiet, cancel) = (|_: u64, _: u64| {}, AtomicBool::new(false));
    let transfer = Transfer { progress: &quiet, cancel: &cancel };
    let mut rows: Vec<(String, Vec<f64>)> = vec![("plain file copy".into(), Vec::new())];
    for (name, _) in &remotes {
        rows.push((format!("upload to {name}"), Vec::new()));
        rows.push((format!("fetch from {name} (verified)"), Vec::new()));
    }
    for round in 0..reps {
        let copy = dir.path().join("copy.bin");
        let t = Instant::now();
        std::fs::copy(&source, &copy).expect("copy");
        std::fs::File::open(&copy).and_then(|f| f.sync_all()).expect("sync");
        rows[0].1.push(rate(mib, t.elapsed()));
        std::fs::remove_file(&copy).expect("remove copy");
        for (r, (_, remote)) in remotes.iter().enumerate() {
            let t = Instant::now();
            remote.upload(&cache, &key, &transfer).expect("upload");
            rows[1 + 2 * r].1.push(rate(mib, t.elapsed()));
            let target = Cache::open(&dir.path().join(format!("fetched-{round}-{r}"))).expect("cache");
            let lock = target.try_lock(&key).expect("lock").expect("free lock");
            let t = Instant::now();
            remote.fetch(&target, &key, &lock, &transfer).expect("fetch").expect("on the remote");
            rows[2 + 2 * r].1.push(rate(mib, t.elapsed()));
            drop(lock);
            std::fs::remove_dir_all(target.root()).expect("remove fetched cache");
        }
    }
    println!("\n| transfer | median MiB/s | rounds |\n|---|---:|---|");
    for (name, mut rates) in rows {
        rates.sort_by(f64::total_cmp);
        let all: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        println!("| {name} | {:.0} | {} |", rates[rates.len() / 2], all.join(", "));
    }
    drop(server);
}

fn rate(mib: usize, took: Duration) -> f64 {
    mib as f64 / took.as_secs_f64()
}

fn write_random(path: &Path, mib: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        f.write_all(&block).expect("write");
    }
}

/// Kills the server when the bench ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts s3s-fs on a free loopback port and points the AWS variables at it.
fn start_s3s(dir: &Path) -> Server {
    let bin = std::env::var_os("SCALEMAKE_S3S_FS").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/scalemake/tools/bin/s3s-fs")
    });
    assert!(bin.is_file(), "s3s-fs is missing at {}: run scripts/test.sh or set SCALEMAKE_S3S_FS", bin.display());
    let root = dir.join("s3");
    std::fs::create_dir_all(root.join("bench")).expect("bucket dir");
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let child = Command::new(bin)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            "bench",
            "--secret-key",
            "bench-secret",
        ])
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start s3s-fs");
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ] {
        std::env::set_var(k, v);
    }
    std::env::set_var("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"));
    Server(child)
}
