//! Data as the field ships it: Parquet written by pyarrow, `.jsonl.zst`
//! written by the `zstd` CLI, and tokenizers that exist already (tiktoken's
//! GPT-2 and cl100k by name, a `tokenizer.json` by path) — through the real
//! pipeline, corpus → tokenizer → shards → train.

mod common;
use common::{training_project, Project};

use std::path::Path;
use std::process::Command;

fn python() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// Writes `docs` as a Parquet file with pyarrow: an `id` column, the text in
/// `body`, two rows per row group (so reading crosses row groups).
fn pyarrow_parquet(path: &Path, docs: &[&str]) {
    let script = r#"
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
docs = json.loads(sys.argv[2])
table = pa.table({"id": list(range(len(docs))), "body": docs})
pq.write_table(table, sys.argv[1], row_group_size=2)
"#;
    let out = Command::new(python())
        .args(["-c", script])
        .arg(path)
        .arg(serde_json::to_string(docs).unwrap())
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "pyarrow could not write {} (scripts/setup.sh installs it): {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compresses `path` to `path.zst` with the zstd CLI.
fn zstd_cli(path: &Path) {
    let out =
        Command::new("zstd").args(["-q", "-f", "--rm"]).arg(path).output().expect("the zstd CLI (apt install zstd)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The token ids of every `<split>_*.bin` shard in `dir`, in order.
fn shard_tokens(dir: &Path, split: &str) -> Vec<u32> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{split}_")))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for path in names {
        let bytes = std::fs::read(path).unwrap();
        let version = i32::from_le_bytes(bytes[4..8].try_into().unwrap());
        match version {
            1 => out.extend(bytes[1024..].chunks(2).map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))),
            2 => out.extend(bytes[1024..].chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap()))),
            v => panic!("shard version {v}"),
        }
    }
    out
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

const MIXED: &str = "
name: formats
nodes:
  corpus: {kind: corpus, paths: [data], text_field: body, split: {val: 0.0, test: 0.0}}
  gpt2: {kind: tokenizer, pretrained: gpt2}
  shards: {kind: shards, input: [corpus, gpt2], shard_tokens: 100000}
";

#[test]
fn parquet_and_zstd_corpora_go_to_gpt2_shards_without_a_copy_of_the_text() {
    let p = Project::new(MIXED);
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    let parquet_docs = ["Le chat dort.", "Il pleut sur la ville.", "Le chat dort.", "Trois petits chats.", "Fin."];
    pyarrow_parquet(&p.path().join("data/a.parquet"), &parquet_docs);
    p.write(
        "data/b.jsonl",
        "{\"body\": \"Hello world\"}\n{\"body\": \"Trois petits chats.\"}\n{\"body\": \"Un été à Paris\"}\n",
    );
    zstd_cli(&p.path().join("data/b.jsonl"));
    assert!(p.path().join("data/b.jsonl.zst").exists());

    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let corpus = p.artifact("corpus");
    let stats = json(&corpus.join("stats.json"));
    assert_eq!(stats["documents"], 6, "{stats}");
    assert_eq!(stats["duplicates_removed"], 2, "{stats}");
    assert_eq!(stats["files"], 2, "{stats}");
    // The artifact is an index: no file in it holds the text.
    for entry in walkdir::WalkDir::new(&corpus).into_iter().flatten().filter(|e| e.file_type().is_file()) {
        let bytes = std::fs::read(entry.path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("petits chats"), "{} holds text", entry.path().display());
    }
    let index = json(&corpus.join("index.json"));
    assert_eq!(index["sources"][0]["format"], "parquet");
    assert_eq!(index["sources"][1]["format"], "jsonl");
    assert_eq!(index["sources"][1]["path"], "data/b.jsonl.zst");

    // GPT-2's ids, each document after GPT-2's end-of-text token (50256).
    let shards = p.artifact("shards");
    let meta = json(&shards.join("meta.json"));
    assert_eq!((meta["vocab_size"].as_u64(), meta["eot"].as_u64()), (Some(50_257), Some(50_256)));
    let tokens = shard_tokens(&shards, "train");
    let hello = tokens.iter().position(|&t| t == 15496).expect("\"Hello\" is GPT-2 id 15496");
    assert_eq!(&tokens[hello - 1..hello + 3], [50_256, 15496, 995, 50_256], "<eot> Hello world <eot>");
    assert_eq!(tokens.iter().filter(|&&t| t == 50_256).count(), 6);
    let shard_stats = json(&shards.join("stats.json"));
    assert_eq!(shard_stats["train"]["documents"], 6);
    assert_eq!(shard_stats["train"]["tokens"].as_u64(), Some(tokens.len() as u64));

    // A changed source rebuilds the corpus and what follows, not the tokenizer.
    let parquet_more: Vec<&str> = parquet_docs.iter().copied().chain(["Encore un."]).collect();
    pyarrow_parquet(&p.path().join("data/a.parquet"), &parquet_more);
    let run = p.sm(&["run"]);
    assert_eq!(run.built(), ["corpus", "shards"], "{}", run.stderr);
    assert_eq!(json(&p.artifact("corpus").join("stats.json"))["documents"], 7);
}

#[test]
fn malformed_files_name_the_row_or_line_or_are_skipped_and_counted() {
    let p = Project::new(MIXED);
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    pyarrow_parquet(&p.path().join("data/a.parquet"), &["Bonjour.", "Au revoir."]);
    // A Parquet file cut in half, and JSONL whose third line is broken.
    let whole = std::fs::read(p.path().join("data/a.parquet")).unwrap();
    std::fs::write(p.path().join("data/cut.parquet"), &whole[..whole.len() / 2]).unwrap();
    p.write("data/b.jsonl", "{\"body\": \"un\"}\n{\"body\": \"deux\"}\n{\"body\": 3}\n");
    zstd_cli(&p.path().join("data/b.jsonl"));
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("data/b.jsonl.zst: line 3: no string field `body`"), "{}", run.stderr);
    assert!(p.staging_dirs() == 0 && p.objects().len() <= 1, "nothing partial in the cache");

    p.write("exp.yaml", &MIXED.replace("text_field: body,", "text_field: body, on_error: skip,"));
    let run = p.sm(&["run", "corpus"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let stats = json(&p.artifact("corpus").join("stats.json"));
    assert_eq!(stats["files_skipped"], 2, "{stats}");
    assert_eq!(stats["documents"], 2, "{stats}");
    let problems: Vec<&str> =
        stats["skipped"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap()).collect();
    assert_eq!(problems, ["data/b.jsonl.zst", "data/cut.parquet"]);
}

/// GPT-2 and cl100k by name, end to end to a trained model: the model's
/// vocabulary follows the tokenizer, and cl100k's ids (past 65,536) go
/// into u32 shards that the loader reads.
#[test]
fn pretrained_tokenizers_train_models_of_their_vocabulary() {
    let chain = |name: &str| {
        format!(
            "
  tok_{name}: {{kind: tokenizer, input: corpus, pretrained: {name}}}
  shards_{name}: {{kind: shards, input: [corpus, tok_{name}], shard_tokens: 100000}}
  train_{name}:
    kind: train
    input: shards_{name}
    model: {{preset: nano}}
    batch_size: 2
    max_tokens: 1024
    eval_points: 2
    eval_tokens: 256
    optim: {{lr: 3e-3, warmup_tokens: 256}}
    device: cpu
    threads: 1"
        )
    };
    let study = format!(
        "name: pretrained\nnodes:\n  corpus: {{kind: corpus, paths: [fr], split: {{val: 0.3, test: 0.2}}}}{}{}\n",
        chain("gpt2"),
        chain("cl100k_base")
    );
    let p = training_project(&study);
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    for (name, vocab, version) in [("gpt2", 50_257, 1), ("cl100k_base", 100_277, 2)] {
        let shards = p.artifact(&format!("shards_{name}"));
        let first = std::fs::read(shards.join("train_000000.bin")).unwrap();
        assert_eq!(i32::from_le_bytes(first[4..8].try_into().unwrap()), version, "{name}");
        let shown = p.sm(&["show", &format!("train_{name}")]).stdout;
        assert!(shown.contains(&format!("vocabulary {vocab}")), "{name}: {shown}");
        let tok = p.sm(&["show", &format!("tok_{name}")]).stdout;
        assert!(tok.contains("bytes/token on val") && tok.contains(&format!("vocabulary {vocab}")), "{tok}");
    }
    let gpt2 = shard_tokens(&p.artifact("shards_gpt2"), "val");
    let cl100k = shard_tokens(&p.artifact("shards_cl100k_base"), "val");
    assert!(cl100k.iter().any(|&t| t > 65_535), "cl100k ids past u16");
    assert!(cl100k.len() < gpt2.len(), "cl100k compresses French better than GPT-2");
}

/// A `tokenizer.json` by path encodes exactly as the node that trained it
/// (the fast encoder is used for it, since it is byte-level BPE), and a
/// sample of the corpus trains a tokenizer that says how much it read.
#[test]
fn tokenizer_files_and_sampled_training() {
    let study = "
name: files
nodes:
  corpus: {kind: corpus, paths: [fr], split: {val: 0.3, test: 0.2}}
  trained: {kind: tokenizer, input: corpus, vocab_size: 400}
  shards: {kind: shards, input: [corpus, trained], shard_tokens: 100000}
";
    let p = Project::with_french_corpus(study);
    assert_eq!(p.sm(&["run"]).code, 0);
    std::fs::copy(p.artifact("trained").join("tokenizer.json"), p.path().join("tok.json")).unwrap();
    let before = shard_tokens(&p.artifact("shards"), "train");
    p.write(
        "exp.yaml",
        &study.replace(
            "trained: {kind: tokenizer, input: corpus, vocab_size: 400}",
            "trained: {kind: tokenizer, input: corpus, file: tok.json}",
        ),
    );
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(shard_tokens(&p.artifact("shards"), "train"), before);
    assert!(p.sm(&["show", "trained"]).stdout.contains("fast encoder"));

    // All documents in train (4 KB), a third of them sampled.
    let sampled = study
        .replace("split: {val: 0.3, test: 0.2}", "split: {val: 0.0, test: 0.0}")
        .replace("vocab_size: 400}", "vocab_size: 300, sample_bytes: 1500}");
    p.write("exp.yaml", &sampled);
    let run = p.sm(&["run", "trained"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let shown = p.sm(&["show", "trained"]).stdout;
    assert!(shown.contains("a sample for sample_bytes: 1500"), "{shown}");
    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("metric  {name} = ")).and_then(|v| v.parse().ok()))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let read = metric(&shown, "trained_on_bytes");
    let train = metric(&p.sm(&["show", "corpus"]).stdout, "train_bytes");
    assert!(read > 0.0 && read < train, "a sample of the {train} bytes, not {read}");
}
