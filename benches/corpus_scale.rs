//! The data path at scale: corpus → tokenizer → shards on generated corpora
//! of 1 GB and 10 GB, stage by stage, with wall time, peak RSS and cache
//! bytes for each; optionally side by side with an older `scalemake` binary
//! (the in-memory data path before the streaming one) on the same text.
//!
//! The corpora are deterministic: documents of 3–30 sentences drawn by a
//! seeded ChaCha8 generator from the sentences of the French corpus
//! (`data/fr`, from `scripts/fetch-corpus.sh`), so no two documents repeat
//! and de-duplication keeps them all. They are written as Parquet files of
//! about 1 GB of text each (snappy-compressed, as Hugging Face datasets
//! ship), and, for an older binary that reads no Parquet, as JSONL.
//!
//! Each stage is its own `scalemake run <node>` process; its peak RSS is the
//! process's `ru_maxrss` from `wait4` (the data nodes run in-process).
//! The shards stage's rate is compared with the single-thread encode rate
//! of the same tokenizer on the same documents, measured in this run.
//!
//! Run: `cargo bench --bench corpus_scale` (both sizes), or with
//! `SCALE_GB=1` for one size; `SCALE_BEFORE=/path/to/old/scalemake` adds the
//! older binary's rows (only at sizes ≤ `SCALE_BEFORE_MAX_GB`, default 1:
//! it holds the corpus in memory). Work goes to `$SCALE_DIR` (default
//! `/tmp/scalemake-scale`): 10 GB needs ~20 GB free there, ~35 GB with an
//! older binary, and is removed after each size unless `SCALE_KEEP=1`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const GB: u64 = 1_000_000_000;
/// Text per generated file, as FineWeb's Parquet shards.
const FILE_BYTES: u64 = GB;
/// BPE trains on a sample of this much text (the paper's 50,262 tokens).
const SAMPLE_BYTES: u64 = 100_000_000;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = PathBuf::from(std::env::var("SCALE_DIR").unwrap_or_else(|_| "/tmp/scalemake-scale".into()));
    let sizes: Vec<u64> = std::env::var("SCALE_GB")
        .unwrap_or_else(|_| "1,10".into())
        .split(',')
        .map(|s| s.trim().parse().expect("SCALE_GB: sizes in GB, comma-separated"))
        .collect();
    let before = std::env::var_os("SCALE_BEFORE").map(PathBuf::from);
    let before_max: u64 = std::env::var("SCALE_BEFORE_MAX_GB").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    // Caches and generated text are removed after each size (a 10 GB run
    // holds ~35 GB at its peak) unless SCALE_KEEP=1 keeps them for reruns.
    let keep = std::env::var("SCALE_KEEP").is_ok_and(|v| v == "1");
    let sentences = sentences(&root.join("data/fr"));
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_scalemake"));
    let mut report = String::new();
    let _ = writeln!(report, "{} sentences from data/fr; {} threads\n", sentences.len(), rayon::current_num_threads());
    let _ = writeln!(
        report,
        "| corpus | binary | stage | wall s | cores busy | text MB/s | peak RSS MB (maxrss) | peak anon RSS MB | cache MB | notes |"
    );
    let _ = writeln!(report, "|---|---|---|---:|---:|---:|---:|---:|---:|---|");
    for &gb in &sizes {
        let dir = work.join(format!("{gb}gb"));
        let data = dir.join("data");
        let text_bytes = generate(&data, &sentences, gb * GB, before.is_some() && gb <= before_max);
        let mut binaries = vec![("streaming", ours.clone(), "parquet")];
        if let Some(old) = before.as_ref().filter(|_| gb <= before_max) {
            binaries.push(("in-memory (before)", old.clone(), "jsonl"));
        }
        for (label, binary, format) in binaries {
            let project = dir.join(format!("project-{}", format));
            let _ = std::fs::remove_dir_all(&project);
            std::fs::create_dir_all(&project).expect("project dir");
            // Inputs are paths inside the project: a link to the generated files.
            std::os::unix::fs::symlink(data.join(format), project.join("corpus")).expect("link the corpus");
            let sample = if format == "parquet" { format!(", sample_bytes: {SAMPLE_BYTES}") } else { String::new() };
            let experiment = format!(
                "name: scale\nnodes:\n  corpus: {{kind: corpus, paths: [corpus], split: {{val: 0.005, test: 0.005}}}}\n  tokenizer: {{kind: tokenizer, input: corpus, vocab_size: 50262{sample}}}\n  shards: {{kind: shards, input: [corpus, tokenizer]}}\n"
            );
            std::fs::write(project.join("exp.yaml"), experiment).expect("exp.yaml");
            for stage in ["corpus", "tokenizer", "shards"] {
                let cost = run_stage(&binary, &project, stage);
                let seconds = cost.seconds;
                let cache = dir_bytes(&project.join("cache/objects"));
                let notes = match stage {
                    "tokenizer" if format == "parquet" => format!("BPE on a {} MB sample", SAMPLE_BYTES / 1_000_000),
                    "tokenizer" => "BPE on all of train".into(),
                    "shards" if format == "parquet" => {
                        let (single, all) = encode_rates(&project, &data.join("parquet"));
                        let rate = text_bytes as f64 / 1e6 / seconds;
                        format!(
                            "{rate:.1} MB/s of text = {:.2}× the single-thread encode rate ({single:.1} MB/s); \
                             encoding alone, in memory, on every core: {all:.1} MB/s = {:.2}×",
                            rate / single,
                            all / single
                        )
                    }
                    _ => String::new(),
                };
                let line = format!(
                    "| {gb} GB | {label} | {stage} | {seconds:.1} | {:.2} | {:.1} | {:.0} | {:.0} | {:.0} | {notes} |",
                    cost.cpu_seconds / seconds,
                    text_bytes as f64 / 1e6 / seconds,
                    cost.max_rss as f64 / 1e6,
                    cost.anon as f64 / 1e6,
                    cache as f64 / 1e6
                );
                eprintln!("{line}");
                let _ = writeln!(report, "{line}");
            }
            if !keep {
                let _ = std::fs::remove_dir_all(&project);
            }
        }
        if !keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    println!("{report}");
}

/// The sentences of the French corpus (lines cut at ". "), 20 bytes or more.
fn sentences(dir: &Path) -> Vec<String> {
    assert!(dir.is_dir(), "{} is missing: run scripts/fetch-corpus.sh", dir.display());
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name().into_iter().flatten() {
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        for line in text.lines() {
            for s in line.split(". ") {
                let s = s.trim();
                if s.len() >= 20 {
                    out.push(s.to_string());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Writes `bytes` of text as Parquet files (and JSONL when `jsonl`) under
/// `dir` unless a previous run left them complete; returns the text bytes.
fn generate(dir: &Path, sentences: &[String], bytes: u64, jsonl: bool) -> u64 {
    let done = dir.join("complete");
    if let Ok(text) = std::fs::read_to_string(&done) {
        if let Ok(n) = text.trim().parse() {
            if !jsonl || dir.join("jsonl").is_dir() {
                return n;
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("parquet")).expect("data dir");
    if jsonl {
        std::fs::create_dir_all(dir.join("jsonl")).expect("data dir");
    }
    let t = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let mut written = 0u64;
    let mut file = 0;
    while written < bytes {
        let path = dir.join(format!("parquet/part-{file:05}.parquet"));
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let mut writer: Option<ArrowWriter<std::fs::File>> = None;
        let mut lines = jsonl.then(|| {
            std::io::BufWriter::new(std::fs::File::create(dir.join(format!("jsonl/part-{file:05}.jsonl"))).unwrap())
        });
        let mut in_file = 0u64;
        while in_file < FILE_BYTES && written < bytes {
            let docs: Vec<String> = (0..10_000).map(|_| document(&mut rng, sentences)).collect();
            let size: u64 = docs.iter().map(|d| d.len() as u64).sum();
            if let Some(out) = lines.as_mut() {
                for d in &docs {
                    use std::io::Write;
                    serde_json::to_writer(&mut *out, &serde_json::json!({ "text": d })).unwrap();
                    out.write_all(b"\n").unwrap();
                }
            }
            let array: ArrayRef = Arc::new(StringArray::from(docs));
            let batch = RecordBatch::try_from_iter([("text", array)]).unwrap();
            let w = writer.get_or_insert_with(|| {
                ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), Some(props.clone()))
                    .unwrap()
            });
            w.write(&batch).unwrap();
            in_file += size;
            written += size;
        }
        writer.expect("a batch").close().unwrap();
        file += 1;
    }
    std::fs::write(&done, written.to_string()).unwrap();
    eprintln!(
        "generated {:.2} GB of text in {file} file(s) in {:.0} s",
        written as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
    written
}

/// 3–30 sentences in paragraphs of up to 6.
fn document(rng: &mut ChaCha8Rng, sentences: &[String]) -> String {
    let n = 3 + (rng.next_u32() % 28) as usize;
    let mut doc = String::new();
    for i in 0..n {
        let s = &sentences[(rng.next_u64() % sentences.len() as u64) as usize];
        if i > 0 {
            doc.push_str(if rng.next_u32() % 6 == 0 { ".\n\n" } else { ". " });
        }
        doc.push_str(s);
    }
    doc.push('.');
    doc
}

/// What one stage cost.
struct Cost {
    seconds: f64,
    /// `ru_maxrss`: resident pages at the peak, the input files' mapped
    /// pages included (hashing maps them).
    max_rss: u64,
    /// The peak of `RssAnon` in `/proc/<pid>/status`, sampled every 20 ms:
    /// the memory the process itself holds.
    anon: u64,
    /// User plus system CPU seconds (`ru_utime + ru_stime`): over the wall
    /// time, how many cores the stage kept busy.
    cpu_seconds: f64,
}

/// Runs `scalemake run exp.yaml <stage>` in `project`.
fn run_stage(binary: &Path, project: &Path, stage: &str) -> Cost {
    let t = Instant::now();
    let child = Command::new(binary)
        .args(["run", "exp.yaml", stage])
        .current_dir(project)
        .stdout(std::fs::File::create(project.join(format!("{stage}.out"))).unwrap())
        .stderr(std::fs::File::create(project.join(format!("{stage}.err"))).unwrap())
        .spawn()
        .expect("start scalemake");
    let pid = child.id() as i32;
    let status_file = format!("/proc/{pid}/status");
    let mut status = 0;
    // SAFETY: wait4 on our own child, with valid out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut anon = 0u64;
    loop {
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid {
            break;
        }
        assert_eq!(done, 0, "wait4");
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            let kb = text
                .lines()
                .find_map(|l| l.strip_prefix("RssAnon:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            anon = anon.max(kb.unwrap_or(0) * 1024);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let seconds = t.elapsed().as_secs_f64();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{} run {stage} failed: see {}",
        binary.display(),
        project.join(format!("{stage}.err")).display()
    );
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Cost {
        seconds,
        max_rss: usage.ru_maxrss as u64 * 1024,
        anon,
        cpu_seconds: cpu(usage.ru_utime) + cpu(usage.ru_stime),
    }
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// MB/s of one thread, then of every core (rayon, document by document),
/// encoding 60 MB of the corpus held in memory with the built tokenizer,
/// each the best of three passes (one pass of 30 MB ranged 65–85 MB/s on
/// this noisy box). The second is the ceiling of the shards stage, which
/// also reads, checks and writes.
fn encode_rates(project: &Path, parquet: &Path) -> (f64, f64) {
    use rayon::prelude::*;
    use scalemake::data::corpus::formats::read_documents;
    use scalemake::data::corpus::normalize::normalize;
    let tokenizer = walkdir::WalkDir::new(project.join("cache/objects"))
        .into_iter()
        .flatten()
        .find(|e| e.file_name() == "tokenizer.json")
        .expect("the tokenizer artifact")
        .into_path();
    let encoder = scalemake::data::tokenize::TextEncoder::load(tokenizer.parent().unwrap()).unwrap();
    let mut docs = Vec::new();
    let mut bytes = 0;
    let first = parquet.join("part-00000.parquet");
    let read = std::sync::atomic::AtomicU64::new(0);
    let _ = read_documents(&first, scalemake::data::corpus::Format::Parquet, "text", &read, &mut |d| {
        bytes += d.len();
        docs.push(normalize(&d));
        bytes < 60_000_000
    });
    let best = |pass: &dyn Fn() -> usize| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                assert!(pass() > 0);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let one = best(&|| docs.iter().map(|d| encoder.encode(d).len()).sum());
    let all = best(&|| docs.par_iter().map(|d| encoder.encode(d).len()).sum());
    let mb = bytes as f64 / 1e6;
    (mb / one, mb / all)
}
