//! The README's YAML reference is the kinds' schemas, rendered: this test
//! fails when they drift apart, and with `SCALEMAKE_UPDATE_README=1` writes
//! the rendering into the README instead.

use scalemake::nodes::Registry;

const BEGIN: &str = "<!-- reference:begin -->\n";
const END: &str = "<!-- reference:end -->";

#[test]
fn the_readme_reference_is_the_kinds_schemas() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let (Some(start), Some(end)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md lacks the reference markers")
    };
    let current = &readme[start + BEGIN.len()..end];
    let generated = Registry::builtin().reference_markdown();
    if current != generated {
        if std::env::var_os("SCALEMAKE_UPDATE_README").is_some() {
            std::fs::write(path, format!("{}{generated}{}", &readme[..start + BEGIN.len()], &readme[end..])).unwrap();
            return;
        }
        panic!("README.md's reference differs from the schemas; run `SCALEMAKE_UPDATE_README=1 cargo test --release --test readme`");
    }
}

/// Every kind and every top-level key of the example experiment files is in
/// the reference, so the examples teach nothing the reference omits.
#[test]
fn the_example_experiments_use_documented_kinds() {
    let reference = Registry::builtin().reference_markdown();
    for file in ["tiny", "cpu-study", "cpu-sweep", "paper", "gpu-small", "variants"] {
        let text = std::fs::read_to_string(format!("{}/experiments/{file}.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        for kind in text.lines().filter_map(|l| l.trim().strip_prefix("kind: ")) {
            assert!(reference.contains(&format!("#### `{}`", kind.trim())), "{file}.yaml: kind {kind} undocumented");
        }
    }
}
