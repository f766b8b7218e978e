//! The compiled training step against the eager one, on the CPU: for every
//! variant the loss and gradients agree (loss ≤1e-5 relative, gradients
//! ≤1e-4), a 20-step curve follows the eager curve, and a run resumed from
//! a checkpoint equals one that never stopped, dropout included.
//!
//! Each compile takes about half a minute on two cores, so packages are
//! made once per shape and shared between the tests (under a file lock:
//! nextest runs every test in a process of its own).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use scalemake::train::compile::{CompileJob, CompileOutcome, CompileRecord, PACKAGE_FILE, RECORD_FILE};
use scalemake::train::job::{OptimSpec, Precision};
use scalemake::train::{ModelShape, Variant};
use scalemake_torch::model::gpt::Gpt;
use scalemake_torch::train::compiled::{compile, CompiledStep};
use scalemake_torch::train::Trainer;
use tch::{nn, Device, Kind, Tensor};

const VOCAB: i64 = 300;
const ROWS: i64 = 4;

fn shape(variant: Variant, dropout: f64) -> ModelShape {
    ModelShape { variant, dropout, context: 32, ..ModelShape::preset("nano", VOCAB).unwrap() }
}

/// The package for `shape`, compiled once for all tests, with its record.
fn package(shape: &ModelShape) -> (PathBuf, CompileRecord) {
    let name = format!("{:?}-{}-{}", shape.variant, shape.dropout, shape.context);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compiled-steps").join(name);
    fs::create_dir_all(&dir).unwrap();
    let lock = File::create(dir.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    let record_path = dir.join("out").join(RECORD_FILE);
    if !record_path.exists() {
        let out = dir.join("out.tmp");
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out).unwrap();
        let job = CompileJob {
            model: shape.clone(),
            precision: Precision::Fp32,
            micro_batch: ROWS,
            device: "cpu".into(),
            threads: 0,
            timed_steps: 2,
            script: Path::new(env!("CARGO_MANIFEST_DIR")).join("python/compile_step.py"),
            out: out.clone(),
            work: dir.join("work"),
        };
        let record = compile(&job).unwrap();
        fs::write(out.join(RECORD_FILE), serde_json::to_vec(&record).unwrap()).unwrap();
        fs::rename(&out, dir.join("out")).unwrap();
    }
    let record: CompileRecord = serde_json::from_slice(&fs::read(&record_path).unwrap()).unwrap();
    (dir.join("out").join(PACKAGE_FILE), record)
}

fn batch(seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let data = Tensor::randint(VOCAB, [ROWS, 33], (Kind::Int64, Device::Cpu));
    (data.narrow(1, 0, 32), data.narrow(1, 1, 32))
}

fn optim() -> OptimSpec {
    OptimSpec { warmup_tokens: 4.0 * 128.0, decay_tokens: 1e6, ..OptimSpec::constant(3e-3) }
}

/// A model and its trainer, compiled or not, initialised from `seed`.
fn trainer(shape: &ModelShape, seed: i64, package: Option<&Path>) -> (nn::VarStore, Gpt, Trainer) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Gpt::new(&vs.root(), shape, Kind::Float);
    let mut trainer = Trainer::new(&vs, &optim());
    if let Some(package) = package {
        trainer.use_compiled(CompiledStep::load(package, &vs).unwrap());
    }
    (vs, model, trainer)
}

/// The loss and flat gradients of one micro-batch, eager and compiled, at
/// weights that have moved away from those the package was checked at.
fn agrees_with_eager(variant: Variant) {
    let shape = shape(variant, 0.0);
    let (package, record) = package(&shape);
    assert_eq!(record.outcome, CompileOutcome::Compiled, "{variant:?}: {record:?}");
    let check = record.check.expect("a compiled step was checked");
    assert!(check.loss_relative <= 1e-5 && check.gradient_relative <= 1e-4, "{variant:?}: {check:?}");

    let (vs, model, mut eager) = trainer(&shape, 11, None);
    for s in 0..3 {
        eager.step(&model, &[batch(s)]).unwrap();
    }
    let step = CompiledStep::load(&package, &vs).unwrap();
    let (x, y) = batch(7);
    for mut p in sorted_trainable(&vs) {
        p.zero_grad();
    }
    let expected_loss = model.loss(&x, &y, false);
    expected_loss.backward();
    let flat = flat_params(&vs);
    let expected_grads = flat_grads(&vs);
    let (loss, grads) = tch::no_grad(|| step.run(&flat, &x, &y)).unwrap();
    let rel = |a: &Tensor, b: &Tensor| (a - b).norm().double_value(&[]) / b.norm().double_value(&[]);
    let loss_rel = rel(&loss, &expected_loss.detach());
    let grad_rel = rel(&grads, &expected_grads);
    assert!(loss_rel <= 1e-5, "{variant:?}: loss {loss_rel:e} relative");
    assert!(grad_rel <= 1e-4, "{variant:?}: gradients {grad_rel:e} relative");
}

/// The trainable variables in the flat buffers' order (by name), flattened.
fn sorted_trainable(vs: &nn::VarStore) -> Vec<Tensor> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.into_iter().map(|(_, t)| t).collect()
}

fn flat_params(vs: &nn::VarStore) -> Tensor {
    Tensor::cat(&sorted_trainable(vs).iter().map(|t| t.detach().reshape([-1])).collect::<Vec<_>>(), 0)
}

fn flat_grads(vs: &nn::VarStore) -> Tensor {
    Tensor::cat(&sorted_trainable(vs).iter().map(|t| t.grad().reshape([-1])).collect::<Vec<_>>(), 0)
}

#[test]
fn the_compiled_baseline_step_agrees_with_eager() {
    agrees_with_eager(Variant::Baseline);
}

#[test]
fn the_compiled_doped_step_agrees_with_eager() {
    agrees_with_eager(Variant::Doped);
}

#[test]
fn the_compiled_fastfood_step_agrees_with_eager() {
    agrees_with_eager(Variant::Fastfood);
}

#[test]
fn the_compiled_blockdiag_step_agrees_with_eager() {
    agrees_with_eager(Variant::BlockdiagHadamard);
}

#[test]
fn a_compiled_curve_follows_the_eager_curve_for_20_steps() {
    let shape = shape(Variant::Baseline, 0.0);
    let (package, _) = package(&shape);
    let curve = |package: Option<&Path>| -> Vec<f64> {
        let (_vs, model, mut trainer) = trainer(&shape, 3, package);
        assert_eq!(trainer.is_compiled(), package.is_some());
        (0..20)
            .map(|s| {
                // Two micro-batches a step (accumulation is part of what must
                // agree), the same ones each step so that the model learns them.
                let _ = s;
                let (a, b) = (batch(100), batch(101));
                trainer.step(&model, &[a, b]).unwrap().loss.double_value(&[])
            })
            .collect()
    };
    let (eager, compiled) = (curve(None), curve(Some(&package)));
    for (step, (e, c)) in eager.iter().zip(&compiled).enumerate() {
        assert!((e - c).abs() <= 1e-3 * e.abs(), "step {step}: eager {e}, compiled {c}");
    }
    assert!(compiled[19] < compiled[0] - 0.5, "it learns: {compiled:?}");
}

#[test]
fn a_resumed_compiled_run_with_dropout_equals_an_uninterrupted_one() {
    let shape = shape(Variant::Baseline, 0.1);
    let (package, record) = package(&shape);
    assert_eq!(record.outcome, CompileOutcome::Compiled, "{record:?}");
    // As the training loop does: dropout is reseeded from (seed, step).
    let steps = |trainer: &mut Trainer, model: &Gpt, range: std::ops::Range<i64>| -> Vec<f64> {
        range
            .map(|s| {
                let data = batch(200 + s);
                tch::manual_seed(1000 + s);
                trainer.step(model, &[data]).unwrap().loss.double_value(&[])
            })
            .collect()
    };
    let (_vs, model, mut whole) = trainer(&shape, 5, Some(&package));
    let uninterrupted = steps(&mut whole, &model, 0..12);

    let (_vs, model, mut first) = trainer(&shape, 5, Some(&package));
    let mut resumed = steps(&mut first, &model, 0..6);
    let saved: Vec<(String, Tensor)> = first.state().into_iter().map(|(n, t)| (n.to_string(), t.copy())).collect();
    let (steps_done, tokens) = (first.steps(), first.tokens);
    drop(first);
    let (_vs, model, mut second) = trainer(&shape, 99, Some(&package));
    second.restore(&saved, steps_done, tokens).unwrap();
    resumed.extend(steps(&mut second, &model, 6..12));
    assert_eq!(resumed, uninterrupted, "bit-exact across the resume");

    // Dropout is really on: the same step under another seed draws other masks.
    let (vs, _model, _trainer) = trainer(&shape, 5, None);
    let step = CompiledStep::load(&package, &vs).unwrap();
    let (x, y) = batch(200);
    let loss_under = |seed: i64| {
        tch::manual_seed(seed);
        tch::no_grad(|| step.run(&flat_params(&vs), &x, &y)).unwrap().0.double_value(&[])
    };
    assert_eq!(loss_under(1), loss_under(1));
    assert_ne!(loss_under(1), loss_under(2));
}
