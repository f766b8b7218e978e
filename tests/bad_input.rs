//! Malformed experiment files (issue 9, "bad input"): every file under
//! `tests/fixtures/bad/` and a few generated ones (deep nesting, 10 MB) must
//! make `scalemake status` exit 2, quickly, without a panic, naming
//! `file:line:column` and what is wrong. Corrupt data files (token shards,
//! `tokenizer.json`, corpus files) must give an error naming the file.

mod common;
use common::Project;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `(fixture, expected message fragment, expected line:column)`.
const CASES: &[(&str, &str, &str)] = &[
    ("bad_indentation.yaml", "invalid YAML: while parsing a block mapping, did not find expected key", "5:7"),
    ("bad_node_name.yaml", "node name `my node` may only use letters", "3:3"),
    ("billion_laughs.yaml", "aliases expand to more than 100000 nodes", "7:40"),
    ("bom_and_crlf.yaml", "unknown key `outputz`", "3:33"),
    ("comment_only.yaml", "an experiment file is a mapping with `nodes:`, found null", "1:1"),
    ("complex_key.yaml", "mapping keys must be plain scalars", "3:5"),
    ("cycle.yaml", "dependency cycle: a → b → c → a", "3:40"),
    ("deep_nesting.yaml", "nesting deeper than 64 levels", "2:71"),
    ("duplicate_key.yaml", "duplicate key `cmd` (first defined at line 5)", "6:5"),
    ("duplicate_node.yaml", "duplicate key `a` (first defined at line 3)", "4:3"),
    ("empty.yaml", "an experiment file is a mapping with `nodes:`, found null", "1:1"),
    ("huge_float.yaml", "`nodes.c.split.val`: must be a finite number, found inf", "3:46"),
    ("huge_hex.yaml", "found `0xffffffffffffffffffff`, beyond the 64-bit integer range", "3:35"),
    (
        "huge_int.yaml",
        "expected an integer ≥ 1, found 100000000000000000000000 (beyond the 64-bit integer range)",
        "3:35",
    ),
    ("huge_negative_int.yaml", "found -100000000000000000000000 (beyond the 64-bit integer range)", "3:35"),
    ("inf_int_param.yaml", "`nodes.tok.vocab_size`: expected an integer ≥ 257, found inf", "3:38"),
    ("inf_param.yaml", "`nodes.c.split.test`: must be a finite number, found -inf", "3:47"),
    ("list_document.yaml", "an experiment file is a mapping with `nodes:`, found a list", "2:1"),
    ("lone_cr.yaml", "unknown key `outputz`", "3:33"),
    ("matrix_explosion.yaml", "`matrix:` expands to 10 × 10 × 10 × 10 × 10 × 10 × 10 × 10 instances", "7:7"),
    ("missing_input.yaml", "no node named `c`", "4:40"),
    ("missing_kind.yaml", "missing `kind:`", "3:6"),
    ("missing_nodes.yaml", "missing `nodes:`", "2:1"),
    ("nan_param.yaml", "`nodes.c.split.val`: must be a finite number, found NaN", "3:46"),
    ("nan_sweep.yaml", "sweep values must be strings, finite numbers or booleans, found NaN", "3:49"),
    ("non_utf8.yaml", "file is not valid UTF-8", "3:31"),
    ("null_node.yaml", "`nodes.a`: a node is a mapping with `kind:`, found null", "3:3"),
    ("scalar_document.yaml", "an experiment file is a mapping with `nodes:`, found a string", "2:1"),
    ("self_reference.yaml", "node `a` cannot take itself as input", "3:40"),
    ("tab_indentation.yaml", "tabs disallowed", "3:2"),
    ("two_documents.yaml", "holds one YAML document", "3:1"),
    ("unclosed_brace.yaml", "while parsing a flow mapping, did not find expected ',' or '}'", "4:1"),
    ("unclosed_bracket.yaml", "while parsing a flow sequence, expected ',' or ']'", "4:1"),
    ("unclosed_quote.yaml", "while scanning a quoted scalar, found unexpected end of stream", "3:27"),
    ("unknown_alias.yaml", "unknown anchor", "3:6"),
    ("unknown_key.yaml", "`nodes.a.retries`: unknown key `retries`", "6:5"),
    ("unknown_kind.yaml", "unknown node kind `shell`", "3:13"),
    ("unknown_sweep_var.yaml", "`${size}` is not a sweep variable of this node", "3:27"),
    ("unknown_top_key.yaml", "unknown top-level key `nodez`", "2:1"),
    ("wrong_type_int.yaml", "`nodes.tok.vocab_size`: expected an integer ≥ 257, found a string", "3:38"),
    ("wrong_type_kind.yaml", "expected a kind name, found an integer", "3:13"),
    ("wrong_type_list.yaml", "`nodes.a.cmd`: expected a string, found a list", "3:27"),
    ("wrong_type_nodes.yaml", "`nodes`: expected a mapping, found a list", "3:3"),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad")
}

/// Runs `status` on `bytes` as `exp.yaml`; asserts exit 2, no panic, the
/// message and `exp.yaml:<location>`, within `limit`. Returns stderr.
fn check(case: &str, bytes: &[u8], expected: &str, location: &str, limit: Duration) -> String {
    let p = Project::new("");
    std::fs::write(p.path().join("exp.yaml"), bytes).unwrap();
    let start = Instant::now();
    let run = p.sm(&["status"]);
    let took = start.elapsed();
    let err = &run.stderr;
    assert_eq!(run.code, 2, "{case}: expected exit 2, got {}:\n{}{err}", run.code, run.stdout);
    assert!(!err.contains("panicked"), "{case}: {err}");
    assert!(err.contains(expected), "{case}: missing `{expected}` in:\n{err}");
    if location.is_empty() {
        assert!(location_in(err).is_some(), "{case}: no `exp.yaml:line:column: ` in:\n{err}");
    } else {
        let at = format!("exp.yaml:{location}: ");
        assert!(err.contains(&at), "{case}: missing `{at}` in:\n{err}");
    }
    assert!(took < limit, "{case}: took {took:?} (limit {limit:?})");
    run.stderr
}

/// The first `exp.yaml:<line>:<column>: ` in `text`.
fn location_in(text: &str) -> Option<(usize, usize)> {
    text.match_indices("exp.yaml:").find_map(|(i, m)| {
        let mut parts = text[i + m.len()..].splitn(3, ':');
        let line = parts.next()?.parse().ok()?;
        let col = parts.next()?.parse().ok()?;
        parts.next()?.starts_with(' ').then_some((line, col))
    })
}

#[test]
fn every_fixture_is_rejected_with_its_location() {
    let mut on_disk: Vec<String> =
        std::fs::read_dir(fixtures()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    on_disk.sort();
    let listed: Vec<String> = CASES.iter().map(|c| c.0.to_string()).collect();
    assert_eq!(on_disk, listed, "every fixture has a row in CASES and every row a fixture");
    for (file, expected, location) in CASES {
        let bytes = std::fs::read(fixtures().join(file)).unwrap();
        // What each case tests is its first line (files that cannot carry a comment excepted).
        assert!(
            bytes.is_empty() || bytes.starts_with(b"# ") || bytes.starts_with("\u{feff}# ".as_bytes()),
            "{file}: no comment line"
        );
        check(file, &bytes, expected, location, Duration::from_secs(5));
    }
    eprintln!("bad_input: {} fixture cases rejected with exit 2 and file:line:column", CASES.len());
}

#[test]
fn ten_thousand_nested_brackets_and_braces() {
    for (open, close, name) in [("[", "]", "brackets"), ("{a: ", "}", "braces"), ("- ", "", "block list")] {
        let text = if name == "block list" {
            // 10,000 nested block sequences: `- - - - … x`.
            format!("nodes:\n  a:\n    {}x\n", open.repeat(10_000))
        } else {
            format!("nodes: {}1{}\n", open.repeat(10_000), close.repeat(10_000))
        };
        let err = check(name, text.as_bytes(), "invalid YAML", "", Duration::from_secs(5));
        assert!(
            err.contains("recursion limit exceeded") || err.contains("nesting deeper than 64 levels"),
            "{name}: {err}"
        );
        let (line, col) = location_in(&err).unwrap();
        assert!((1..=3).contains(&line) && col >= 1, "{name}: {err}");
    }
}

#[test]
fn ten_megabyte_files() {
    let ten_mb = 10 << 20;
    // One line: a flow list of 5 million items where `nodes:` wants a mapping.
    let mut one_line = String::from("nodes: [");
    while one_line.len() < ten_mb {
        one_line.push_str("1,");
    }
    one_line.push_str("]\n");
    check(
        "10 MB one line",
        one_line.as_bytes(),
        "`nodes`: expected a mapping, found a list",
        "1:8",
        Duration::from_secs(10),
    );

    // One 10 MB string.
    let text = format!("nodes: \"{}\"\n", "x".repeat(ten_mb));
    let err =
        check("10 MB string", text.as_bytes(), "expected a mapping, found a string", "1:8", Duration::from_secs(10));
    assert!(err.len() < 10_000, "the snippet of a 10 MB line is clipped ({} bytes of stderr)", err.len());

    // 10 MB of valid declarations with an unknown key at the end.
    let mut many = String::from("# many nodes\nnodes:\n");
    let mut lines = 2;
    let mut i = 0;
    while many.len() < ten_mb {
        many.push_str(&format!("  n{i}: {{kind: command, cmd: \"echo {i}\", deps: [a, b, c]}}\n"));
        i += 1;
        lines += 1;
    }
    many.push_str("  last: {kind: command, cmd: echo, outputz: [x]}\n");
    check(
        "10 MB of nodes",
        many.as_bytes(),
        "unknown key `outputz`",
        &format!("{}:36", lines + 1),
        Duration::from_secs(15),
    );

    // A 10 MB comment, then a scalar document.
    let text = format!("# {}\nhello\n", "c".repeat(ten_mb));
    check("10 MB comment", text.as_bytes(), "found a string", "2:1", Duration::from_secs(10));
}

/// Corrupt data files: each error names the file and says what is wrong.
#[test]
fn corrupt_data_files_name_themselves() {
    use scalemake::data::{bpe, corpus, loader::TokenStream, shard};
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);

    // Token shards: truncated, a foreign file (wrong magic), a header that lies, an empty file.
    shard::write_shard(&at("good.bin"), &[1, 2, 3, 4]).unwrap();
    let good = std::fs::read(at("good.bin")).unwrap();
    std::fs::write(at("truncated.bin"), &good[..good.len() - 3]).unwrap();
    std::fs::write(at("short.bin"), &good[..500]).unwrap();
    std::fs::write(at("empty.bin"), b"").unwrap();
    let mut foreign = b"\x89PNG\r\n\x1a\n".to_vec();
    foreign.resize(2048, 0);
    std::fs::write(at("foreign.bin"), &foreign).unwrap();
    let mut negative = good.clone();
    negative[8..12].copy_from_slice(&(-5i32).to_le_bytes());
    std::fs::write(at("negative.bin"), &negative).unwrap();
    for (name, expected) in [
        ("truncated.bin", "header says 4 tokens (1032 bytes) but the file has 1029 bytes (truncated?)"),
        ("short.bin", "500 bytes is shorter than the 1024-byte shard header (truncated or not a shard)"),
        ("empty.bin", "0 bytes is shorter than the 1024-byte shard header (truncated or not a shard)"),
        ("foreign.bin", "bad magic 1196314761 (expected 20240520): not an llm.c token shard"),
        ("negative.bin", "negative token count -5"),
    ] {
        // After a good shard, so the error names the bad one, not the first.
        let err = TokenStream::open(&[at("good.bin"), at(name)])
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"))
            .to_string();
        assert_eq!(err, format!("{}: {expected}", at(name).display()));
    }
    let missing = TokenStream::open(&[at("missing.bin")]).err().unwrap().to_string();
    assert!(
        missing.starts_with(&at("missing.bin").display().to_string()) && missing.contains("No such file"),
        "{missing}"
    );

    // tokenizer.json: garbage, JSON that is not a tokenizer, truncated, empty.
    let tok = at("tok");
    std::fs::create_dir_all(&tok).unwrap();
    let trained = bpe::train(
        &bpe::BpeSpec { vocab_size: 265, special_tokens: vec!["<|endoftext|>".into()], min_frequency: 0 },
        ["le chat est là ".repeat(50)].into_iter(),
    )
    .unwrap();
    trained.save(tok.join("good.json"), false).unwrap();
    let json = std::fs::read_to_string(tok.join("good.json")).unwrap();
    assert!(bpe::load(&tok.join("good.json")).is_ok());
    for (name, text) in [
        ("garbage.json", "\u{0}\u{1}not json at all"),
        ("other.json", "{\"name\": \"not a tokenizer\", \"version\": 3}"),
        ("truncated.json", &json[..json.len() / 2]),
        ("empty.json", ""),
    ] {
        let path = tok.join(name);
        std::fs::write(&path, text).unwrap();
        let err = bpe::load(&path).err().unwrap_or_else(|| panic!("{name} was accepted"));
        assert!(err.starts_with(&format!("{}: not a valid tokenizer.json: ", path.display())), "{name}: {err}");
        assert!(err.len() > path.display().to_string().len() + 30, "{name}: the error says what is wrong: {err}");
    }

    // Corpus files (user-provided paths): a truncated .gz, invalid JSONL, a JSONL line without the text field, non-UTF-8 text.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, "un document\n".repeat(1000).as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    std::fs::write(at("cut.txt.gz"), &gz[..gz.len() / 2]).unwrap();
    std::fs::write(at("bad.jsonl"), "{\"text\": \"a\"}\n{\"text\": \n").unwrap();
    std::fs::write(at("field.jsonl"), "{\"body\": \"a\"}\n").unwrap();
    std::fs::write(at("latin1.txt"), b"caf\xe9\n").unwrap();
    let zst = zstd::encode_all("{\"text\": \"un document\"}\n".repeat(1000).as_bytes(), 3).unwrap();
    std::fs::write(at("cut.jsonl.zst"), &zst[..zst.len() / 2]).unwrap();
    std::fs::write(at("cut.parquet"), b"PAR1\0\0\0\0").unwrap();
    for (name, expected) in [
        ("cut.txt.gz", "cannot read"),
        ("cut.jsonl.zst", "line "),
        ("cut.parquet", "not a Parquet file"),
        ("bad.jsonl", "line 2: invalid JSON"),
        ("field.jsonl", "line 1: no string field `text`"),
        ("latin1.txt", "invalid UTF-8 at byte 3"),
    ] {
        let read = std::sync::atomic::AtomicU64::new(0);
        let err = corpus::formats::read_documents(&at(name), corpus::Format::Auto, "text", &read, &mut |_| true)
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"))
            .to_string();
        assert!(err.starts_with(&format!("{}: {expected}", at(name).display())), "{name}: {err}");
    }
}

/// The same through the CLI: a `corpus` node reading a corrupt file fails
/// (exit 1) with the file's path in the message.
#[test]
fn corrupt_corpus_file_through_the_cli() {
    let p = Project::new("nodes:\n  corpus: {kind: corpus, paths: [data/bad.jsonl]}\n");
    p.write("data/bad.jsonl", "{\"text\": \"ok\"}\n{oops\n");
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(run.stderr.contains("data/bad.jsonl: line 2: invalid JSON"), "{}", run.stderr);
}
