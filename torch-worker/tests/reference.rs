//! The libtorch model against the PyTorch reference (`benches/reference/gpt.py`):
//! same logits from the same weights, same losses and weights after five
//! Adam steps. Skipped, saying so, when the project's Python has no torch
//! (scripts/setup.sh installs it).

use std::path::Path;
use std::process::Command;

#[test]
fn logits_and_adam_steps_match_pytorch() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let python = root.join(".venv/bin/python");
    let has_torch = Command::new(&python).args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
    assert!(has_torch, "{} cannot import torch: run scripts/setup.sh (scripts/test.sh does)", python.display());
    let dir = tempfile::tempdir().unwrap();
    let case =
        Command::new(env!("CARGO_BIN_EXE_scalemake-torch")).arg("reference-case").arg(dir.path()).output().unwrap();
    assert!(case.status.success(), "{}", String::from_utf8_lossy(&case.stderr));
    let check =
        Command::new(&python).arg(root.join("benches/reference/gpt.py")).arg("check").arg(dir.path()).output().unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "PyTorch disagrees: {report}\n{}", String::from_utf8_lossy(&check.stderr));
    let r: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    let first = r["losses_reference"][0].as_f64().unwrap();
    assert!((first - 1000f64.ln()).abs() < 0.1, "initial loss {first} ≈ ln 1000");
    eprintln!("agreement with PyTorch: {report}");
}
