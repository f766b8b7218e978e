//! Pinned node keys. A key is what every user's cache is addressed by: a
//! change to canonical params, to hashing, to a schema's defaults or to the
//! key layout changes these hex strings and would silently rebuild every
//! study. If this test fails, the change must be deliberate: bump the kind's
//! `version` (or `KEY_FORMAT` for the layout) and update the pins here.

use scalemake::cache::Cache;
use scalemake::exec::{Fingerprinter, Freshness};
use scalemake::graph::Plan;
use scalemake::hash::ContentHash;
use scalemake::nodes::Registry;

const EXPERIMENT: &str = r#"
name: golden
nodes:
  data:
    kind: command
    cmd: cp data.txt "$OUT/"
    deps: [data.txt]
  sweep:
    kind: command
    input: data
    matrix: { lr: [0.001, 0.01] }
    cmd: echo ${lr} > "$OUT/lr.txt"
  train:
    kind: train
    input: data
    model: { preset: nano, d_model: 96 }
    context: 64
    max_tokens: 65_536
    optim: { lr: 3e-3 }
"#;

/// `(node, key)`: a command with a declared file, one instance of a sweep,
/// a training node (its input's artifact digest stood in for, below).
const PINNED: &[(&str, &str)] = &[
    ("data", "e3cedb1ac6566d16f70af06e73c5bb93c131773bc86014f1aa2bf50cd6c0f0e6"),
    ("sweep[lr=0.01]", "b9173be2ef51b46e3740ca3e6d675e2c2aaee04f8ad0e3f80280b1e6b2378c7c"),
    ("train", "a74aa453af010a02130cdff412a696609822aef82d588be5f851da6daf9dd5bd"),
];

#[test]
fn keys_of_representative_nodes_are_pinned() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("golden.yaml"), EXPERIMENT).unwrap();
    std::fs::write(dir.path().join("data.txt"), "the same bytes, always\n").unwrap();
    let experiment =
        scalemake::spec::load(&dir.path().join("golden.yaml"), &Registry::builtin()).expect("the experiment loads");
    let plan = Plan::new(experiment).expect("acyclic");
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let mut fingerprints = Fingerprinter::new(&plan, &cache, dir.path());
    // Every node's artifact is taken as built with a digest fixed by its id,
    // so downstream keys are computed without training anything.
    let digests: Vec<Option<ContentHash>> =
        plan.experiment.nodes.iter().map(|n| Some(ContentHash::of(n.id.0.as_bytes()))).collect();
    let keys: Vec<(String, String)> = (0..plan.len())
        .map(|i| match fingerprints.evaluate(i, &digests) {
            Freshness::Stale { key: Some(key), .. } => (plan.experiment.nodes[i].id.0.clone(), key.hex()),
            other => panic!("{}: {other:?}", plan.experiment.nodes[i].id),
        })
        .collect();
    for (node, pinned) in PINNED {
        let (_, key) = keys.iter().find(|(id, _)| id == node).unwrap_or_else(|| panic!("no node {node} in {keys:?}"));
        assert_eq!(
            key, pinned,
            "the key of `{node}` changed: if on purpose, bump its kind's version and re-pin (all keys: {keys:#?})"
        );
    }
}
