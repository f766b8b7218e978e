//! Data-parallel training on the CPU (issue 32): the same run on 1 and 2
//! ranks (gloo, real processes), each rank on its share of the 2 cores, and
//! where a 2-rank step's time goes: the gradient exchange (rank 0's host
//! time in the all-reduce, which gloo blocks on) against the rest (forward,
//! backward, Adam). Also checks that the loss curves agree.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench --bench
//! data_parallel` (a few minutes; `DP_PRESETS=nano,micro` to choose).
//! The corpus is the test fixture (tests/fixtures/fr), tokenised by a
//! 800-token BPE.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scalemake = Path::new(env!("CARGO_BIN_EXE_scalemake"));
    let presets = std::env::var("DP_PRESETS").unwrap_or_else(|_| "nano,micro".into());
    println!("| preset | ranks | threads/rank | steps | wall s | step ms | exchange ms/step | exchange share | floats exchanged | final loss |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for preset in presets.split(',') {
        let mut finals = Vec::new();
        for devices in [1u64, 2] {
            let dir = tempfile::tempdir().expect("temp dir");
            let fr = dir.path().join("fr");
            std::fs::create_dir_all(&fr).unwrap();
            for entry in std::fs::read_dir(root.join("tests/fixtures/fr")).unwrap().flatten() {
                std::fs::copy(entry.path(), fr.join(entry.file_name())).unwrap();
            }
            let threads = 2 / devices;
            let (context, steps) = if preset == "nano" { (64, 200) } else { (128, 40) };
            let batch = 8;
            let study = format!(
                "name: dp\nnodes:\n  corpus: {{kind: corpus, paths: [fr], split: {{val: 0.1, test: 0.1}}}}\n  tokenizer: {{kind: tokenizer, input: corpus, vocab_size: 800}}\n  shards: {{kind: shards, input: [corpus, tokenizer]}}\n  train:\n    kind: train\n    input: shards\n    model: {{preset: {preset}}}\n    context: {context}\n    batch_size: {batch}\n    dropout: 0.0\n    max_tokens: {}\n    eval_points: 2\n    eval_tokens: 512\n    optim: {{lr: 1e-3, warmup_tokens: 1024}}\n    device: cpu\n    threads: {threads}\n    devices: {devices}\n    checkpoint_seconds: 0\n",
                steps * batch * context
            );
            std::fs::write(dir.path().join("exp.yaml"), study).unwrap();
            let run = |target: &str| {
                let out =
                    Command::new(scalemake).args(["run", "exp.yaml", target]).current_dir(dir.path()).output().unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            };
            run("shards");
            let t = Instant::now();
            run("train");
            let wall = t.elapsed().as_secs_f64();
            let log = std::fs::read_to_string(dir.path().join("cache/logs/dp/train.log")).unwrap();
            let last_step =
                log.lines().filter(|l| l.starts_with("step ") && l.contains(", loss ")).last().expect("a step line");
            let field = |after: &str, until: &str| -> f64 {
                last_step.split(after).nth(1).and_then(|r| r.split(until).next()).and_then(|v| v.parse().ok()).unwrap()
            };
            let last_loss = field(", loss ", ",");
            // The last window of steps' throughput (evaluations excluded).
            let tokens_per_second: f64 = last_step
                .split(" tokens/s")
                .next()
                .and_then(|head| head.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .expect("tokens/s in the step line");
            let step_ms = 1e3 * (batch * context) as f64 / tokens_per_second;
            finals.push(last_loss);
            // "gradient exchange on rank 0: X ms a step of Y ms (Z%; N floats …)"
            let (exchange, _, floats) = log
                .lines()
                .find_map(|l| {
                    let rest = l.strip_prefix("gradient exchange on rank 0: ")?;
                    let exchange: f64 = rest.split(" ms").next()?.parse().ok()?;
                    let step: f64 = rest.split(" of ").nth(1)?.split(" ms").next()?.parse().ok()?;
                    let floats = rest.split("; ").nth(1)?.split(' ').next()?.to_string();
                    Some((exchange, step, floats))
                })
                .unwrap_or((0.0, 0.0, "–".into()));
            let step = step_ms;
            println!(
                "| {preset} | {devices} | {threads} | {steps} | {wall:.1} | {step:.2} | {exchange:.2} | {:.0}% | {floats} | {last_loss:.4} |",
                100.0 * exchange / step
            );
        }
        println!(
            "\n{preset}: final training loss, 2 ranks against 1: {:+.2e} (relative)\n",
            (finals[1] - finals[0]) / finals[0]
        );
    }
}
