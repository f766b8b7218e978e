//! Data-path benchmark: BPE training, encoding throughput and the shard loader,
//! side by side with Python `tokenizers` and `tiktoken` in one run.
//!
//! 1. **BPE training** on the training split of the French corpus (`data/fr`,
//!    made by `scripts/fetch-corpus.sh`; normalised and split exactly as the
//!    `corpus` node does) with vocabulary 50,262: our `data::bpe::train` vs
//!    Python `tokenizers` with the same settings (ByteLevel without prefix
//!    space, full byte alphabet, `<|endoftext|>`), fed the same documents.
//! 2. **Encoding** the same documents with the trained tokenizer: ours (the
//!    tiktoken-algorithm `Encoder` the `shards` node uses) on one thread and on
//!    all threads (rayon over documents, as the node does), the `tokenizers`
//!    crate's own `encode_fast`, and Python `tokenizers` (`encode_batch`, all threads; a loop of
//!    `encode`, one thread) and `tiktoken` (`encode_ordinary`, one thread;
//!    `encode_ordinary_batch`, all threads). tiktoken cannot download GPT-2's
//!    vocabulary here (no network), so it gets *our* vocabulary as its
//!    mergeable ranks with GPT-2's pre-tokenisation regex: the same algorithm
//!    and table size as GPT-2 encoding. Each encoder's token count is printed
//!    so the comparison is of equal work.
//! 3. **Loader**: random `(80, 1025)` batches from the encoded training tokens
//!    written as shards, with and without the prefetch thread.
//!
//! Run: `cargo bench --bench data`. Python: `$BENCH_PYTHON`, else
//! `~/.cache/scalemake/bench-venv/bin/python` (needs `pip install
//! tokenizers==0.23.3 tiktoken`); a missing package skips its rows.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use scalemake::data::bpe::{self, BpeSpec};
use scalemake::data::corpus::index::{self, IndexError};
use scalemake::data::corpus::{Format, Split};
use scalemake::data::loader::{prefetch, Batches, Order, TokenStream};
use scalemake::data::shard::write_shard;

const VOCAB: usize = 50_262;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("data/fr");
    if !corpus.is_dir() {
        eprintln!("data/fr is missing: run scripts/fetch-corpus.sh first");
        std::process::exit(2);
    }
    let inputs: Vec<index::Input> = walkdir::WalkDir::new(&corpus)
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "txt"))
        .map(|e| index::Input { recorded: e.path().display().to_string(), path: e.into_path(), copy: false })
        .collect();
    let index_dir = tempfile::tempdir().expect("tempdir");
    let options =
        index::Options { format: Format::Auto, text_field: "text".into(), val: 0.005, test: 0.005, skip_bad: false };
    let read = std::sync::atomic::AtomicU64::new(0);
    let built = index::build(&inputs, &options, index_dir.path(), &read, &mut |_| true).expect("corpus");
    let mut train: Vec<String> = Vec::new();
    built
        .documents::<IndexError>(index_dir.path(), Path::new("/"), &[Split::Train], &read, |batch| {
            train.extend(batch.into_iter().map(|(_, t)| t));
            Ok(())
        })
        .expect("corpus");
    let mb = train.iter().map(|d| d.len()).sum::<usize>() as f64 / 1e6;
    let threads = rayon::current_num_threads();
    let work = tempfile::tempdir().expect("tempdir");
    let docs_path = work.path().join("train.jsonl");
    let mut jsonl = String::new();
    for d in &train {
        jsonl.push_str(&serde_json::json!({ "text": d }).to_string());
        jsonl.push('\n');
    }
    std::fs::write(&docs_path, jsonl).expect("write docs");
    let python = std::env::var_os("BENCH_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/scalemake/bench-venv/bin/python")
    });

    let mut report = String::new();
    let _ = writeln!(report, "Corpus: {} training documents, {mb:.1} MB; {threads} threads\n", train.len());

    // 1. Training.
    let spec = BpeSpec { vocab_size: VOCAB, special_tokens: vec!["<|endoftext|>".into()], min_frequency: 0 };
    let t = Instant::now();
    let tokenizer = bpe::train(&spec, train.clone().into_iter()).expect("train");
    let ours_train = t.elapsed().as_secs_f64();
    let tok_path = work.path().join("tokenizer.json");
    tokenizer.save(&tok_path, false).expect("save");
    let py_train = python_seconds(&python, PY_TRAIN, &[&docs_path, &work.path().join("py-tokenizer.json")]);
    let _ = writeln!(report, "| BPE training, vocab {VOCAB} | seconds | ratio (ours / theirs) |\n|---|---:|---:|");
    let _ = writeln!(report, "| scalemake `tokenizer` node | {ours_train:.2} | |");
    match &py_train {
        Ok(s) => {
            let _ = writeln!(report, "| Python tokenizers 0.23.3 | {s:.2} | {:.2}× |", ours_train / s);
            let same = std::fs::read(&tok_path).ok() == std::fs::read(work.path().join("py-tokenizer.json")).ok();
            let _ = writeln!(report, "\nSame tokenizer.json bytes as Python: {same}\n");
        }
        Err(e) => {
            let _ = writeln!(report, "| Python tokenizers | skipped: {e} | |\n");
        }
    }

    // 2. Encoding.
    let _ = writeln!(
        report,
        "| encoding {mb:.1} MB | threads | seconds | MB/s | Mtokens/s | tokens |\n|---|---:|---:|---:|---:|---:|"
    );
    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let mut rows: Vec<(String, usize, f64, usize)> = Vec::new();
    let fast = bpe::Encoder::new(&tokenizer).expect("encoder");
    let all = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    for (label, pool) in [("scalemake `Encoder` (shards node)", &single), ("scalemake `Encoder` (shards node)", &all)] {
        let t = Instant::now();
        let n: usize = pool.install(|| train.par_iter().map(|d| fast.encode(d).len()).sum());
        rows.push((label.to_string(), pool.current_num_threads(), t.elapsed().as_secs_f64(), n));
    }
    for (label, pool) in [("`tokenizers` crate, `encode_fast`", &single), ("`tokenizers` crate, `encode_fast`", &all)] {
        let t = Instant::now();
        let n: usize =
            pool.install(|| train.par_iter().map(|d| bpe::encode(&tokenizer, d).expect("encode").len()).sum());
        rows.push((label.to_string(), pool.current_num_threads(), t.elapsed().as_secs_f64(), n));
    }
    match python_lines(&python, PY_ENCODE, &[&docs_path, &tok_path]) {
        Ok(lines) => {
            for line in lines {
                let parts: Vec<&str> = line.split('\t').collect();
                if let [label, th, secs, n] = parts.as_slice() {
                    rows.push((
                        label.to_string(),
                        th.parse().unwrap_or(0),
                        secs.parse().unwrap_or(f64::NAN),
                        n.parse().unwrap_or(0),
                    ));
                }
            }
        }
        Err(e) => rows.push((format!("Python encoders skipped: {e}"), 0, f64::NAN, 0)),
    }
    for (label, th, secs, n) in &rows {
        let _ =
            writeln!(report, "| {label} | {th} | {secs:.2} | {:.1} | {:.2} | {n} |", mb / secs, *n as f64 / secs / 1e6);
    }
    let ours_1 = rows[0].2;
    if let Some(tk) = rows.iter().find(|r| r.0.starts_with("tiktoken") && r.1 == 1) {
        let _ = writeln!(
            report,
            "\nSingle-thread speed vs tiktoken: {:.2}× (ours {ours_1:.2} s, tiktoken {:.2} s)",
            tk.2 / ours_1,
            tk.2
        );
    }

    // 3. Loader.
    let tokens: Vec<u16> = train
        .par_iter()
        .flat_map_iter(|d| std::iter::once(0u16).chain(fast.encode(d).into_iter().map(|t| t as u16)))
        .collect();
    let shard_dir = work.path().join("shards");
    std::fs::create_dir_all(&shard_dir).expect("mkdir");
    for (i, chunk) in tokens.chunks(1_000_000).enumerate() {
        write_shard(&shard_dir.join(format!("train_{i:06}.bin")), chunk).expect("shard");
    }
    let stream = Arc::new(TokenStream::open_split(&shard_dir, "train").expect("open"));
    let (b, ctx, n) = (80, 1024, 2000);
    let t = Instant::now();
    let mut sum = 0u64;
    for batch in Batches::new(stream.clone(), b, ctx, Order::Random { seed: 1 }).expect("batches").take(n) {
        sum += u64::from(batch[0]);
    }
    let direct = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for batch in prefetch(Batches::new(stream, b, ctx, Order::Random { seed: 1 }).expect("batches"), 4).iter().take(n) {
        sum += u64::from(batch[0]);
    }
    let fetched = n as f64 / t.elapsed().as_secs_f64();
    let _ = writeln!(
        report,
        "\n| loader, B={b} T={ctx}, {} tokens in {} shards | batches/s | Mtokens/s |\n|---|---:|---:|",
        tokens.len(),
        tokens.len().div_ceil(1_000_000)
    );
    let _ =
        writeln!(report, "| random windows, caller's thread | {direct:.0} | {:.0} |", direct * (b * ctx) as f64 / 1e6);
    let _ = writeln!(
        report,
        "| random windows, prefetch thread | {fetched:.0} | {:.0} |",
        fetched * (b * ctx) as f64 / 1e6
    );
    let _ = writeln!(report, "\n(checksum {sum})");
    print!("{report}");
}

const PY_TRAIN: &str = r#"
import json, sys, time
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
docs = [json.loads(l)["text"] for l in open(sys.argv[1], encoding="utf-8")]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
from tokenizers import processors
tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
trainer = trainers.BpeTrainer(vocab_size=50262, min_frequency=0, show_progress=False,
    special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
t = time.perf_counter()
tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
print(time.perf_counter() - t)
tok.save(sys.argv[2], pretty=False)
"#;

const PY_ENCODE: &str = r#"
import json, os, sys, time
docs = [json.loads(l)["text"] for l in open(sys.argv[1], encoding="utf-8")]
threads = os.cpu_count()
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[2])
t = time.perf_counter(); n = sum(len(e.ids) for e in tok.encode_batch(docs, add_special_tokens=False))
print("Python tokenizers encode_batch", threads, time.perf_counter() - t, n, sep="\t")
t = time.perf_counter(); n = sum(len(tok.encode(d, add_special_tokens=False).ids) for d in docs)
print("Python tokenizers encode", 1, time.perf_counter() - t, n, sep="\t")
try:
    import tiktoken
except ImportError:
    sys.exit(0)
vocab = json.load(open(sys.argv[2], encoding="utf-8"))["model"]["vocab"]
# GPT-2's byte → unicode table (the ByteLevel alphabet), inverted.
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs = bs[:]; k = 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + k); k += 1
unbyte = {chr(c): b for b, c in zip(bs, cs)}
ranks = {bytes(unbyte[ch] for ch in tokstr): i for tokstr, i in vocab.items() if tokstr != "<|endoftext|>"}
enc = tiktoken.Encoding(name="ours-as-tiktoken",
    pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    mergeable_ranks=ranks, special_tokens={"<|endoftext|>": vocab["<|endoftext|>"]})
t = time.perf_counter(); n = sum(len(enc.encode_ordinary(d)) for d in docs)
print("tiktoken encode_ordinary (our vocab)", 1, time.perf_counter() - t, n, sep="\t")
t = time.perf_counter(); n = sum(len(x) for x in enc.encode_ordinary_batch(docs, num_threads=threads))
print("tiktoken encode_ordinary_batch (our vocab)", threads, time.perf_counter() - t, n, sep="\t")
"#;

fn python_lines(python: &Path, script: &str, args: &[&Path]) -> Result<Vec<String>, String> {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().last().unwrap_or("failed").to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect())
}

fn python_seconds(python: &Path, script: &str, args: &[&Path]) -> Result<f64, String> {
    python_lines(python, script, args)?
        .first()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| "no timing printed".to_string())
}
