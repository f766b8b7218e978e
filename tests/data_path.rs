//! The data path end to end on a small French fixture: corpus → tokenizer →
//! shards, caching behaviour, byte-identical reruns, and compatibility with
//! Python's `tokenizers` (which `scripts/setup.sh` installs in the venv).

mod common;
use common::Project;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use scalemake::data::corpus::{self, index};

const PIPELINE: &str = "
name: data
nodes:
  corpus: {kind: corpus, paths: [fr], split: {val: 0.3, test: 0.2}}
  tokenizer: {kind: tokenizer, input: corpus, vocab_size: 400}
  shards: {kind: shards, input: [corpus, tokenizer], shard_tokens: 300}
";

fn project() -> Project {
    Project::with_french_corpus(PIPELINE)
}

fn artifact_of(p: &Project, node: &str) -> PathBuf {
    p.artifact(node)
}

fn tokens(path: &Path) -> Vec<u16> {
    let bytes = std::fs::read(path).unwrap();
    bytes[1024..].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
}

/// The normalised documents of `splits` of the corpus artifact in `dir`.
fn documents(dir: &Path, root: &Path, splits: &[corpus::Split]) -> Vec<String> {
    let mut docs = Vec::new();
    index::CorpusIndex::load(dir)
        .unwrap()
        .documents::<index::IndexError>(dir, root, splits, &AtomicU64::new(0), |batch| {
            docs.extend(batch.into_iter().map(|(_, t)| t));
            Ok(())
        })
        .unwrap();
    docs
}

#[test]
fn pipeline_builds_caches_and_reruns_only_what_changed() {
    let p = project();
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.built(), ["corpus", "shards", "tokenizer"]);
    assert!(p.sm(&["run"]).stderr.contains("0 built, 3 fresh"));

    let corpus = p.sm(&["show", "corpus"]).stdout;
    assert!(corpus.contains("metric  duplicates_removed = 1"), "{corpus}");
    assert!(corpus.contains("metric  documents = 6"), "{corpus}");
    let tok = p.sm(&["show", "tokenizer"]).stdout;
    assert!(
        tok.contains("metric  vocab_size = 400") && tok.contains("bytes/token on val") && tok.contains("example: "),
        "{tok}"
    );

    let shards = artifact_of(&p, "shards");
    let before: Vec<(String, Vec<u8>)> = shard_files(&shards);
    assert!(before.iter().any(|(n, _)| n == "train_000001.bin"), "300-token shards split the train set");

    // Changing the shard size rebuilds only the shards …
    p.write("exp.yaml", &PIPELINE.replace("shard_tokens: 300", "shard_tokens: 100000"));
    let run = p.sm(&["run"]);
    assert_eq!(run.built(), ["shards"], "{}", run.stderr);
    let one: Vec<u16> = tokens(&artifact_of(&p, "shards").join("train_000000.bin"));
    let many: Vec<u16> = before
        .iter()
        .filter(|(n, _)| n.starts_with("train_"))
        .flat_map(|(_, b)| b[1024..].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])))
        .collect();
    assert_eq!(one, many, "resharding keeps the token stream");

    // … and rebuilding from scratch gives byte-identical shards and tokenizer.
    p.write("exp.yaml", PIPELINE);
    assert!(p.sm(&["run"]).built().is_empty(), "back to the cached shards");
    let tokenizer_json = std::fs::read(artifact_of(&p, "tokenizer").join("tokenizer.json")).unwrap();
    std::fs::remove_dir_all(p.path().join("cache")).unwrap();
    assert_eq!(p.sm(&["run"]).built(), ["corpus", "shards", "tokenizer"]);
    assert_eq!(shard_files(&artifact_of(&p, "shards")), before);
    assert_eq!(std::fs::read(artifact_of(&p, "tokenizer").join("tokenizer.json")).unwrap(), tokenizer_json);
}

fn shard_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn every_document_is_preceded_by_end_of_text() {
    let p = project();
    assert_eq!(p.sm(&["run"]).code, 0);
    let shards = artifact_of(&p, "shards");
    let stream: Vec<u16> = shard_files(&shards)
        .iter()
        .filter(|(n, _)| n.starts_with("train_"))
        .flat_map(|(_, b)| b[1024..].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>())
        .collect();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(artifact_of(&p, "corpus").join("index.json")).unwrap()).unwrap();
    let docs = index["splits"]["train"]["documents"].as_u64().unwrap() as usize;
    assert_eq!(stream[0], 0);
    assert_eq!(stream.iter().filter(|&&t| t == 0).count(), docs);
}

#[test]
fn bad_corpus_inputs_name_the_file() {
    let p = project();
    std::fs::write(p.path().join("fr/bad.txt"), b"caf\xe9").unwrap();
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("fr/bad.txt: invalid UTF-8 at byte 3"), "{}", run.stderr);
    p.write(
        "exp.yaml",
        &PIPELINE.replace("split: {val: 0.3, test: 0.2}", "split: {val: 0.3, test: 0.2}, on_error: skip"),
    );
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(p.sm(&["show", "corpus"]).stdout.contains("files_skipped = 1"));
}

#[test]
fn python_tokenizers_loads_our_tokenizer_and_encodes_identically() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let has_tokenizers = std::process::Command::new(&python)
        .args(["-c", "import tokenizers"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        has_tokenizers,
        "Python `tokenizers` is not installed in .venv: run scripts/setup.sh (scripts/test.sh does)"
    );
    let p = project();
    assert_eq!(p.sm(&["run"]).code, 0);
    // The validation documents as the corpus index gives them to the shards node.
    let val = p.path().join("val.jsonl");
    let lines: Vec<String> = documents(&artifact_of(&p, "corpus"), p.path(), &[corpus::Split::Val])
        .iter()
        .map(|d| serde_json::json!({ "text": d }).to_string() + "\n")
        .collect();
    std::fs::write(&val, lines.concat()).unwrap();
    let script = r#"
import json, struct, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1] + "/tokenizer.json")
eot = tok.token_to_id("<|endoftext|>")
ids = []
for line in open(sys.argv[2], encoding="utf-8"):
    text = json.loads(line)["text"]
    enc = tok.encode(text, add_special_tokens=False).ids
    assert tok.decode(enc, skip_special_tokens=False) == text, "round trip"
    ids += [eot] + enc
import glob
ours = []
for shard in sorted(glob.glob(sys.argv[3] + "/val_*.bin")):
    data = open(shard, "rb").read()
    header = struct.unpack("<256i", data[:1024])
    assert header[0] == 20240520 and header[1] == 1
    ours += struct.unpack("<%dH" % header[2], data[1024:])
ours = list(ours)
assert ours == ids, (len(ours), len(ids))
print("identical", len(ids))
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(artifact_of(&p, "tokenizer"))
        .arg(&val)
        .arg(artifact_of(&p, "shards"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("identical"));
}

/// The whole French corpus (when `scripts/fetch-corpus.sh` has run): a
/// 50,262-token tokenizer trained on it round-trips every document, and the
/// fast encoder gives exactly the ids of `tokenizers` on every document.
#[test]
fn whole_french_corpus_round_trips_with_the_paper_vocabulary() {
    use rayon::prelude::*;
    use scalemake::data::bpe;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fr");
    assert!(root.is_dir(), "data/fr is missing: run scripts/setup.sh (scripts/test.sh does), which fetches it");
    let inputs: Vec<index::Input> = walkdir::WalkDir::new(&root)
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| index::Input { recorded: e.path().display().to_string(), path: e.into_path(), copy: false })
        .collect();
    let options = index::Options {
        format: corpus::Format::Auto,
        text_field: "text".into(),
        val: 0.0,
        test: 0.0,
        skip_bad: false,
    };
    let out = tempfile::tempdir().unwrap();
    index::build(&inputs, &options, out.path(), &AtomicU64::new(0), &mut |_| true).unwrap();
    let docs = documents(out.path(), Path::new("/"), &corpus::Split::ALL);
    let spec = bpe::BpeSpec { vocab_size: 50_262, special_tokens: vec!["<|endoftext|>".into()], min_frequency: 0 };
    let tok = bpe::train(&spec, docs.clone().into_iter()).unwrap();
    assert_eq!(tok.get_vocab_size(true), 50_262);
    let fast = bpe::Encoder::new(&tok).unwrap();
    let (broken, disagreeing): (usize, usize) = docs
        .par_iter()
        .map(|d| {
            let ids = fast.encode(d);
            (usize::from(bpe::decode(&tok, &ids).unwrap() != *d), usize::from(ids != bpe::encode(&tok, d).unwrap()))
        })
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert_eq!(broken, 0, "documents that do not round-trip");
    assert_eq!(disagreeing, 0, "documents the fast encoder encodes differently from `tokenizers`");
}
