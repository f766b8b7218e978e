//! Property test of the experiment-file loader (issue 9, "bad input"): at
//! least 10,000 generated documents — mutations of real experiment files and
//! documents built from the schemas' own keys — go through
//! `scalemake::spec::load_str` in-process. None may panic (parsing,
//! validation, or rendering the error with miette), and every error must point
//! inside the document (1 ≤ line ≤ lines + 1, column ≥ 1, offset within the
//! text). Deterministic: a fixed-seed proptest runner, no persistence.
//! `SCALEMAKE_FUZZ_CASES=100000` runs a longer campaign.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Instant;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use scalemake::nodes::Registry;
use scalemake::spec::{load_str, LoadError};

/// Valid documents that mutations start from.
const BASES: &[&str] = &[
    include_str!("../experiments/tiny.yaml"),
    include_str!("../experiments/variants.yaml"),
    "nodes:\n  a: {kind: command, cmd: echo hi, outputs: [x]}\n  b: {kind: command, input: a, cmd: 'cat $IN/x'}\n",
    "name: sweep\ndefaults: {seed: 1}\nnodes:\n  gen:\n    kind: command\n    matrix: {n: [1, 2, 3], m: [a, b]}\n    cmd: \"echo ${n} ${m} > $OUT/o\"\n    outputs: [o]\n    env: {X: '1'}\n  use:\n    kind: command\n    input: 'gen[n=2]'\n    cmd: cat\n    resources: {cpu: 2}\n",
    "base: &b {kind: command, cmd: echo}\nnodes:\n  a: *b\n  c:\n    kind: command\n    input: [a]\n    deps: ['*.txt']\n    cmd: |\n      echo one\n      echo two\n",
];

/// YAML-significant tokens that mutations insert.
const TOKENS: &[&str] = &[
    ":",
    "-",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "!!str ",
    "!!int ",
    "\"",
    "'",
    "\t",
    "\n",
    "  ",
    "#",
    "?",
    "|",
    ">",
    "---\n",
    "...\n",
    "${",
    "}",
    "${n}",
    "99999999999999999999999",
    "1e400",
    "-1e400",
    ".nan",
    ".inf",
    "-.inf",
    "0x",
    "0o7",
    "é",
    "日本",
    "\u{feff}",
    "\u{0}",
    "\r",
    "\r\n",
    "%YAML 1.2\n",
    "@",
    "`",
    "~",
    "null",
    "true",
    "kind: command",
    "input: a",
    "matrix: {n: [1]}",
    "nodes:",
    "\u{2028}",
    "1_000",
];

#[derive(Clone, Debug)]
enum Edit {
    DeleteBytes(usize, usize),
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Insert(usize, usize),
    ReplaceByte(usize, u8),
}

fn mutate(base: &str, edits: &[Edit]) -> Vec<u8> {
    let mut bytes = base.as_bytes().to_vec();
    for edit in edits {
        let n = bytes.len().max(1);
        match *edit {
            Edit::DeleteBytes(at, len) => {
                let at = at % n;
                let end = (at + len % 8 + 1).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Edit::Insert(at, token) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, TOKENS[token % TOKENS.len()].bytes());
            }
            Edit::ReplaceByte(at, b) => {
                if !bytes.is_empty() {
                    bytes[at % n] = b;
                }
            }
            Edit::DeleteLine(i) | Edit::DuplicateLine(i) | Edit::SwapLines(i, _) => {
                let mut lines: Vec<Vec<u8>> = bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
                if lines.is_empty() {
                    continue;
                }
                let i = i % lines.len();
                match *edit {
                    Edit::DeleteLine(_) => {
                        lines.remove(i);
                    }
                    Edit::DuplicateLine(_) => {
                        let line = lines[i].clone();
                        lines.insert(i, line);
                    }
                    Edit::SwapLines(_, j) => {
                        let j = j % lines.len();
                        lines.swap(i, j);
                    }
                    _ => unreachable!(),
                }
                bytes = lines.concat();
            }
        }
    }
    bytes
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, l)| Edit::DeleteBytes(a, l)),
        1 => any::<usize>().prop_map(Edit::DeleteLine),
        1 => any::<usize>().prop_map(Edit::DuplicateLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        3 => (any::<usize>(), any::<usize>()).prop_map(|(a, t)| Edit::Insert(a, t)),
        1 => any::<(usize, u8)>().prop_map(|(a, b)| Edit::ReplaceByte(a, b)),
    ]
}

/// A mutated copy of one of [`BASES`]; not always UTF-8 (such bytes are decoded lossily: `load_str` takes text).
fn mutated() -> impl Strategy<Value = String> {
    (0..BASES.len(), prop::collection::vec(edit(), 1..6))
        .prop_map(|(base, edits)| String::from_utf8_lossy(&mutate(BASES[base], &edits)).into_owned())
}

/// A scalar of every YAML type, as YAML text.
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("~".to_string()),
        Just("null".to_string()),
        Just("".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        prop::sample::select(vec![
            "1e400",
            ".nan",
            ".inf",
            "-.inf",
            "99999999999999999999999",
            "0xffffffffffffffffffff",
            "1_000",
            "5e-4",
            "0o17",
            "-0"
        ])
        .prop_map(String::from),
        prop::sample::select(vec![
            "echo",
            "cpu",
            "nano",
            "fp32",
            "baseline",
            "a",
            "b[n=1]",
            "${n}",
            "${N}",
            "'quoted'",
            "\"dq\\n\"",
            "é",
            "*a",
            "&a x",
            "!!str 1"
        ])
        .prop_map(String::from),
    ]
}

/// A value: scalar, or a list or mapping of scalars (flow style).
fn value(params: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => scalar(),
        1 => prop::collection::vec(scalar(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
        1 => prop::collection::vec((prop::sample::select(params), scalar()), 0..3)
            .prop_map(|v| format!("{{{}}}", v.iter().map(|(k, s)| format!("{k}: {s}")).collect::<Vec<_>>().join(", "))),
    ]
}

/// A document from the grammar of experiment files: top-level keys, node
/// declarations with real kinds and param names, inputs, sweeps.
fn structured(kinds: Vec<String>, params: Vec<String>) -> impl Strategy<Value = String> {
    let names =
        vec!["a".to_string(), "b".to_string(), "train".to_string(), "x y".to_string(), "".to_string(), "c".to_string()];
    let key = prop::sample::select(
        params
            .iter()
            .cloned()
            .chain(["kind", "input", "matrix", "resources", "nodes", "bogus"].map(String::from))
            .collect::<Vec<_>>(),
    );
    let kind = prop_oneof![4 => prop::sample::select(kinds), 1 => scalar()];
    let input = prop_oneof![
        prop::sample::select(names.clone()),
        prop::collection::vec(prop::sample::select(names.clone()), 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
        Just("'a[n=1]'".to_string()),
        Just("'a[m=2'".to_string()),
        scalar(),
    ];
    let matrix = prop::collection::vec(
        (prop::sample::select(vec!["n", "m", "width"]), prop::collection::vec(scalar(), 0..4)),
        0..3,
    )
    .prop_map(|v| {
        format!("{{{}}}", v.iter().map(|(k, s)| format!("{k}: [{}]", s.join(", "))).collect::<Vec<_>>().join(", "))
    });
    let node = (
        prop::sample::select(names),
        prop::option::of(kind),
        prop::option::of(input),
        prop::option::of(matrix),
        prop::collection::vec((key, value(params.clone())), 0..5),
        any::<bool>(),
    )
        .prop_map(|(name, kind, input, matrix, fields, flow)| {
            let mut entries: Vec<(String, String)> = Vec::new();
            entries.extend(kind.map(|k| ("kind".to_string(), k)));
            entries.extend(input.map(|i| ("input".to_string(), i)));
            entries.extend(matrix.map(|m| ("matrix".to_string(), m)));
            entries.extend(fields);
            if flow {
                format!(
                    "  {name}: {{{}}}\n",
                    entries.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
                )
            } else {
                format!("  {name}:\n{}", entries.iter().map(|(k, v)| format!("    {k}: {v}\n")).collect::<String>())
            }
        });
    let top = (
        prop::option::of(scalar()),
        prop::option::of(prop::collection::vec((prop::sample::select(params.clone()), scalar()), 0..3)),
        prop::collection::vec(node, 0..5),
        prop::sample::select(vec!["", "bogus: 1\n", "nodes: 1\n", "- x\n"]),
    );
    top.prop_map(|(name, defaults, nodes, extra)| {
        let mut doc = String::new();
        if let Some(n) = name {
            doc.push_str(&format!("name: {n}\n"));
        }
        if let Some(d) = defaults {
            doc.push_str(&format!(
                "defaults: {{{}}}\n",
                d.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
            ));
        }
        doc.push_str("nodes:\n");
        doc.push_str(&nodes.concat());
        doc.push_str(extra);
        doc
    })
}

#[test]
fn generated_documents_never_panic_and_errors_point_inside() {
    let cases: u32 = std::env::var("SCALEMAKE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let registry = Registry::builtin();
    let kinds: Vec<String> = registry.names().into_iter().map(String::from).collect();
    let mut params: Vec<String> = kinds
        .iter()
        .flat_map(|k| registry.get(k).unwrap().schema().fields.iter().map(|f| f.name.to_string()).collect::<Vec<_>>())
        .collect();
    params.sort();
    params.dedup();
    let strategy = prop_oneof![mutated(), structured(kinds, params)];

    // A fixed seed: the same documents on every run and machine.
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let (mut oks, mut errors, mut panics, mut bad_locations) = (0usize, 0usize, 0usize, Vec::new());
    let start = Instant::now();
    // Silence the default hook's message for panics caught below (they are counted and reported).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for _ in 0..cases {
        let doc = strategy.new_tree(&mut runner).expect("generate").current();
        let result = catch_unwind(AssertUnwindSafe(|| {
            let result = load_str(PathBuf::from("fuzz.yaml"), doc.clone(), "fuzz".into(), &registry);
            let rendered: Vec<String> = match &result {
                Err(LoadError::Spec(errs)) => errs
                    .0
                    .iter()
                    .map(|e| {
                        let mut out = String::new();
                        miette::GraphicalReportHandler::new().render_report(&mut out, e).expect("render");
                        out
                    })
                    .collect(),
                _ => vec![],
            };
            (result, rendered)
        }));
        match result {
            Err(_) => {
                panics += 1;
                if panics <= 3 {
                    eprintln!("PANIC on document {doc:?}");
                }
            }
            Ok((Ok(_), _)) => oks += 1,
            Ok((Err(LoadError::Io { .. }), _)) => panic!("load_str does no I/O"),
            Ok((Err(LoadError::Spec(errs)), _)) => {
                errors += 1;
                // Line breaks as YAML counts them: `\n`, `\r\n` or a lone `\r`.
                let doc_lines: Vec<&str> =
                    doc.split('\n').flat_map(|l| l.strip_suffix('\r').unwrap_or(l).split('\r')).collect();
                let lines = doc_lines.len();
                for e in &errs.0 {
                    let s = e.span;
                    let line_text = doc_lines.get(s.line.wrapping_sub(1)).copied().unwrap_or("");
                    let inside = s.line >= 1
                        && s.line <= lines + 1
                        && s.col >= 1
                        && s.col <= line_text.chars().count() + 2
                        && s.offset <= doc.len()
                        && doc.is_char_boundary(s.offset);
                    if !inside {
                        bad_locations
                            .push(format!("{}:{} (offset {}) `{}` in {doc:?}", s.line, s.col, s.offset, e.message));
                    }
                }
            }
        }
    }
    std::panic::set_hook(hook);
    eprintln!(
        "fuzz_spec: {cases} documents in {:.1}s: {errors} rejected, {oks} accepted, {panics} panics, {} errors outside their document",
        start.elapsed().as_secs_f64(),
        bad_locations.len()
    );
    assert_eq!(panics, 0, "the loader panicked on {panics} document(s)");
    assert!(
        bad_locations.is_empty(),
        "{} error(s) point outside the document, e.g.:\n{}",
        bad_locations.len(),
        bad_locations[..bad_locations.len().min(5)].join("\n")
    );
    // The generators reach both outcomes (a test that only ever sees errors would test little).
    assert!(oks >= (cases as usize) / 100 && errors >= (cases as usize) / 4, "oks {oks}, errors {errors}");
}
