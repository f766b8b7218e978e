//! File hashing throughput: `scalemake::hash::digest_file` against `b3sum`.
//!
//! scalemake hashes every declared input file and every artifact with
//! blake3; big files (checkpoints, token shards) go through a memory map
//! hashed on all cores, as `b3sum` does. The goal is at least 80% of
//! `b3sum`'s throughput.
//!
//! What it does: writes a 1 GiB file of pseudo-random bytes into a temp dir
//! (it stays in the page cache: the measurement is warm, CPU-bound hashing,
//! not disk), hashes it once with each side untimed (warm-up, and a check that
//! both produce the same digest), then `BENCH_REPS` rounds, each timing
//! `digest_file` in-process and one `b3sum --no-names FILE` process
//! (interleaved so that machine noise hits both alike). The `b3sum` time
//! includes starting the process, about a millisecond. For context it also
//! times `b3sum --num-threads 1`.
//!
//! Run: `cargo bench --bench hash`. Knobs: `BENCH_HASH_MIB` (file size,
//! default 1024), `BENCH_REPS` (default 7), `B3SUM` (path; default `b3sum` on
//! `$PATH` or `~/.cargo/bin/b3sum`; install with `cargo install b3sum`). Without
//! b3sum only scalemake's throughput is printed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use scalemake::hash::digest_file;

fn main() {
    let mib: usize = std::env::var("BENCH_HASH_MIB").ok().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let reps: usize = std::env::var("BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    let b3sum = find_b3sum();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("file: {mib} MiB of pseudo-random bytes, page cache warm; {reps} rounds; {threads} hardware threads");
    println!(
        "b3sum: {}\n",
        b3sum.as_ref().map_or("not found: comparison skipped (`cargo install b3sum`)".into(), |p| format!(
            "{} ({})",
            p.display(),
            b3sum_version(p)
        ))
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("blob.bin");
    write_file(&path, mib);
    let bytes = (mib as u64) << 20;

    // Warm-up (and page cache), plus agreement on the digest.
    let ours = digest_file(&path).expect("digest_file");
    if let Some(b) = &b3sum {
        let theirs = run_b3sum(b, &path, &[]).0;
        assert_eq!(theirs, ours.hex(), "b3sum and scalemake disagree on the digest");
        println!("digest {} (both agree)\n", ours.short());
    }

    let mut t_ours = Vec::new();
    let mut t_b3 = Vec::new();
    let mut t_b3_1 = Vec::new();
    for round in 0..reps {
        let t = Instant::now();
        let d = digest_file(&path).expect("digest_file");
        t_ours.push(t.elapsed());
        assert_eq!(d, ours);
        if let Some(b) = &b3sum {
            t_b3.push(run_b3sum(b, &path, &[]).1);
            t_b3_1.push(run_b3sum(b, &path, &["--num-threads", "1"]).1);
        }
        eprintln!(
            "round {round}: scalemake {:.3}s{}",
            t_ours[round].as_secs_f64(),
            t_b3.last().map_or(String::new(), |d| format!(", b3sum {:.3}s", d.as_secs_f64()))
        );
    }

    println!("## Hashing a {mib} MiB file (warm page cache)\n");
    println!("| hasher | runs | median time | best time | median throughput | best throughput | vs b3sum (median) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let base = (!t_b3.is_empty()).then(|| median(&t_b3));
    let row = |name: &str, times: &[Duration]| {
        let (med, best) = (median(times), *times.iter().min().unwrap());
        let ratio = base.map_or("—".into(), |b| format!("{:.0}%", 100.0 * b.as_secs_f64() / med.as_secs_f64()));
        println!(
            "| {name} | {} | {:.3} s | {:.3} s | {} | {} | {ratio} |",
            times.len(),
            med.as_secs_f64(),
            best.as_secs_f64(),
            gibs(bytes, med),
            gibs(bytes, best)
        );
    };
    row("`scalemake::hash::digest_file` (in-process)", &t_ours);
    if b3sum.is_some() {
        row("`b3sum --no-names`", &t_b3);
        row("`b3sum --no-names --num-threads 1` (context)", &t_b3_1);
    } else {
        println!("| `b3sum` | — | skipped: not installed | | | | |");
    }
}

/// Writes `mib` MiB from a xorshift stream (fast, incompressible).
fn write_file(path: &Path, mib: usize) {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path).expect("create"));
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for word in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        w.write_all(&chunk).expect("write");
    }
    w.flush().expect("flush");
}

fn run_b3sum(b3sum: &Path, file: &Path, extra: &[&str]) -> (String, Duration) {
    let t = Instant::now();
    let out = Command::new(b3sum).args(extra).arg("--no-names").arg(file).output().expect("run b3sum");
    let d = t.elapsed();
    assert!(out.status.success(), "b3sum failed: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stdout).trim().to_string(), d)
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn gibs(bytes: u64, d: Duration) -> String {
    format!("{:.2} GiB/s", bytes as f64 / (1u64 << 30) as f64 / d.as_secs_f64())
}

/// `$B3SUM`, else `b3sum` on `$PATH`, else `~/.cargo/bin/b3sum`.
fn find_b3sum() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("B3SUM") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("b3sum"))
        .chain([home.join(".cargo/bin/b3sum")])
        .find(|p| p.is_file())
}

fn b3sum_version(p: &Path) -> String {
    Command::new(p)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
