//! Worker commands that exist to check and measure the model against the
//! PyTorch reference (`benches/reference/gpt.py`).

use std::path::Path;
use std::time::Instant;

use scalemake::train::job::OptimSpec;
use scalemake::train::ModelShape;
use tch::{nn, Device, Kind, Tensor};

use scalemake::train::compile::{CompileJob, CompileOutcome, CompileRecord, PACKAGE_FILE};
use scalemake::train::job::Precision;
use scalemake_torch::model::gpt::Gpt;
use scalemake_torch::train::compiled::{compile, CompiledStep};
use scalemake_torch::train::{Phase, Trainer};

/// Adam steps a reference case takes on its one batch.
const CASE_STEPS: usize = 5;

/// Writes a reference case into `dir`: initial weights, one batch, our
/// logits for it, and our losses and weights after a few Adam steps on it
/// (dropout off, constant learning rate). `gpt.py check dir` replays it in
/// PyTorch and compares.
pub fn reference_case(dir: &Path, preset: &str, vocab: i64) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let shape = ModelShape {
        dropout: 0.0,
        ..ModelShape::preset(preset, vocab).ok_or_else(|| format!("unknown preset {preset}"))?
    };
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Gpt::new(&vs.root(), &shape, Kind::Float);
    save_weights(&vs, &dir.join("initial.safetensors"))?;
    let data = Tensor::randint(vocab, [4, shape.context + 1], (Kind::Int64, Device::Cpu));
    let (x, y) = (data.narrow(1, 0, shape.context), data.narrow(1, 1, shape.context));
    let logits = tch::no_grad(|| model.forward_t(&x, false));
    // A constant learning rate: no warmup, floor = peak.
    let optim = OptimSpec::constant(1e-3);
    let mut trainer = Trainer::new(&vs, &optim);
    let batch = [(x.copy(), y.copy())];
    let losses: Vec<f64> = (0..CASE_STEPS)
        .map(|_| {
            trainer.step(&model, &batch).expect("a step on one device has no exchange to fail").loss.double_value(&[])
        })
        .collect();
    save_weights(&vs, &dir.join("final.safetensors"))?;
    let expected = [
        ("x", x.contiguous()),
        ("y", y.contiguous()),
        ("logits", logits.contiguous()),
        ("losses", Tensor::from_slice(&losses)),
    ];
    Tensor::write_safetensors(&expected, dir.join("expected.safetensors")).map_err(|e| e.to_string())?;
    let case = serde_json::json!({
        "model": shape,
        "optim": optim,
        "steps": CASE_STEPS,
        // fp32 on CPU, different kernels and summation orders: agreement to
        // ~1e-6 relative is expected; these bounds leave a margin.
        "tolerance": { "logits": 1e-4, "loss": 1e-4, "params": 1e-4 },
    });
    std::fs::write(dir.join("case.json"), serde_json::to_vec_pretty(&case).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())
}

fn save_weights(vs: &nn::VarStore, path: &Path) -> Result<(), String> {
    let mut weights: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(n, t)| (n, t.detach().contiguous())).collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&weights, path).map_err(|e| e.to_string())
}

/// Settings of a throughput measurement (the same as `gpt.py bench`).
pub struct BenchSpec {
    /// Model preset.
    pub preset: String,
    /// Vocabulary.
    pub vocab: i64,
    /// `cpu`, `cuda`, …
    pub device: String,
    /// Sequences per step.
    pub batch: i64,
    /// Sequences per forward pass.
    pub micro_batch: i64,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// bf16 compute.
    pub bf16: bool,
    /// Also time each phase of a step (synchronising between them).
    pub phases: bool,
    /// Variant instead of the preset's own.
    pub variant: Option<scalemake::train::Variant>,
    /// The preset's shape changed, as a `train` node's `model:` does.
    pub shape: ShapeOverrides,
    /// CPU threads for libtorch (0: its default).
    pub threads: i32,
    /// Train through the compiled step, compiled first with this exporter
    /// (`torch-worker/python/compile_step.py`); the compile is timed.
    pub compiled: Option<std::path::PathBuf>,
}

/// Overrides of a preset's shape (sizing CPU studies measures shapes no
/// preset has).
#[derive(Default)]
pub struct ShapeOverrides {
    /// Blocks.
    pub n_layer: Option<i64>,
    /// Width.
    pub d_model: Option<i64>,
    /// Heads.
    pub n_head: Option<i64>,
    /// Context.
    pub context: Option<i64>,
}

/// Training steps per second on random tokens, as JSON.
pub fn bench(spec: &BenchSpec) -> Result<serde_json::Value, String> {
    let (device, name) = scalemake_torch::device::resolve(&spec.device)?;
    let mut shape =
        ModelShape::preset(&spec.preset, spec.vocab).ok_or_else(|| format!("unknown preset {}", spec.preset))?;
    if let Some(variant) = spec.variant {
        shape.variant = variant;
    }
    let o = &spec.shape;
    (shape.n_layer, shape.d_model, shape.n_head, shape.context) = (
        o.n_layer.unwrap_or(shape.n_layer),
        o.d_model.unwrap_or(shape.d_model),
        o.n_head.unwrap_or(shape.n_head),
        o.context.unwrap_or(shape.context),
    );
    shape.check()?;
    if spec.threads > 0 {
        tch::set_num_threads(spec.threads);
    }
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = Gpt::new(&vs.root(), &shape, if spec.bf16 { Kind::BFloat16 } else { Kind::Float });
    let optim = OptimSpec::constant(1e-4);
    let mut trainer = Trainer::new(&vs, &optim);
    let compile_seconds = match &spec.compiled {
        Some(exporter) => {
            let (package, record) = compile_for_bench(&shape, spec, exporter)?;
            trainer.use_compiled(CompiledStep::load(&package, &vs)?);
            Some(record.compile_seconds)
        }
        None => None,
    };
    let data = Tensor::randint(spec.vocab, [spec.micro_batch, shape.context + 1], (Kind::Int64, device));
    let micro: Vec<(Tensor, Tensor)> = (0..spec.batch / spec.micro_batch.max(1))
        .map(|_| (data.narrow(1, 0, shape.context), data.narrow(1, 1, shape.context)))
        .collect();
    scalemake_torch::device::reset_peak_memory(device);
    for _ in 0..spec.warmup {
        trainer.step(&model, &micro).expect("a step on one device has no exchange to fail");
    }
    sync(device);
    let start = Instant::now();
    let mut last = None;
    for _ in 0..spec.steps {
        last = Some(trainer.step(&model, &micro).expect("a step on one device has no exchange to fail").loss);
    }
    let loss = last.map(|l| l.double_value(&[]));
    sync(device);
    let seconds = start.elapsed().as_secs_f64();
    let tokens = (spec.steps as i64 * spec.batch * shape.context) as f64;
    let counts = shape.param_counts();
    let tokens_per_second = tokens / seconds;
    let phases_ms =
        if spec.phases { Some(phase_times(&mut trainer, &model, &micro, device, spec.steps)) } else { None };
    let variant = serde_json::to_value(shape.variant).map_err(|e| e.to_string())?;
    let peak_memory = scalemake_torch::device::peak_memory(device);
    // MFU two ways: on the paper's compute (trainable weights only) and on
    // what the device executes (frozen weights, the structured transforms).
    let peak = scalemake::train::peak_flops(&name, spec.bf16);
    let mfu = peak.map(|peak| tokens_per_second * shape.flops_per_token(&counts) / peak);
    let mfu_trainable = peak.map(|peak| tokens_per_second * shape.trainable_flops_per_token(&counts) / peak);
    Ok(serde_json::json!({
        "impl": if spec.compiled.is_some() { "scalemake compiled" } else { "scalemake" }, "compile_seconds": compile_seconds, "preset": spec.preset, "n_layer": shape.n_layer, "d_model": shape.d_model, "variant": variant, "params": counts, "device": name, "bf16": spec.bf16,
        "tokens_per_second": tokens_per_second, "mfu": mfu, "mfu_trainable": mfu_trainable, "peak_memory_bytes": peak_memory,
        "hadamard_kernel": scalemake_torch::model::variants::hadamard::kernel_enabled(), "steps": spec.steps, "threads": tch::get_num_threads(), "last_loss": loss,
        "phases_ms": phases_ms, "step_ms": 1e3 * seconds / spec.steps.max(1) as f64,
    }))
}

/// Compiles the step `bench` trains into a scratch directory (the same
/// export and package a `compile` node makes); an export that falls back is
/// an error here, since there is nothing compiled to measure. Returns the
/// package and the compile's record.
fn compile_for_bench(
    shape: &ModelShape,
    spec: &BenchSpec,
    exporter: &Path,
) -> Result<(std::path::PathBuf, CompileRecord), String> {
    let dir = std::env::temp_dir().join(format!("scalemake-bench-{}", std::process::id()));
    let out = dir.join("out");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let job = CompileJob {
        model: shape.clone(),
        precision: if spec.bf16 { Precision::Bf16 } else { Precision::Fp32 },
        micro_batch: spec.micro_batch,
        device: spec.device.clone(),
        threads: spec.threads.max(0) as u64,
        timed_steps: 3,
        script: exporter.to_path_buf(),
        out: out.clone(),
        work: dir.join("work"),
    };
    let record = compile(&job)?;
    match &record.outcome {
        CompileOutcome::Compiled => Ok((out.join(PACKAGE_FILE), record)),
        CompileOutcome::Fallback { reason } => Err(format!("the step did not compile: {reason}")),
    }
}

/// Mean milliseconds per step spent in each [`Phase`] over `steps` more
/// steps, the device drained at every phase boundary. The sum exceeds an
/// unsynchronised step (the host no longer queues ahead): read it for where
/// the time goes, not for throughput.
fn phase_times(
    trainer: &mut Trainer,
    model: &Gpt,
    micro: &[(Tensor, Tensor)],
    device: Device,
    steps: usize,
) -> serde_json::Value {
    let mut totals = [0.0f64; Phase::ALL.len()];
    for _ in 0..steps {
        sync(device);
        let mut since = Instant::now();
        trainer
            .step_marked(model, micro, &mut |phase| {
                sync(device);
                totals[phase as usize] += since.elapsed().as_secs_f64();
                since = Instant::now();
            })
            .expect("a step on one device has no exchange to fail");
    }
    let per_step = |total: f64| 1e3 * total / steps.max(1) as f64;
    Phase::ALL
        .iter()
        .map(|&phase| (phase.name().to_string(), serde_json::json!(per_step(totals[phase as usize]))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Waits for queued work on `device` (a no-op on the CPU).
fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Mean milliseconds of `f` over `reps` calls after one untimed call, the
/// device's queue drained before and after.
fn mean_ms(reps: usize, device: Device, f: &mut dyn FnMut()) -> f64 {
    f();
    sync(device);
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    sync(device);
    1e3 * start.elapsed().as_secs_f64() / reps.max(1) as f64
}

/// Milliseconds per optimiser update (clip + Adam) over a preset's
/// parameters, flat buffers against tch's per-tensor `nn::Adam` with its
/// `clip_grad_norm` (which also reads the norm back to the host), as JSON.
pub fn bench_optimizer(preset: &str, vocab: i64, device_spec: &str, steps: usize) -> Result<serde_json::Value, String> {
    use tch::nn::OptimizerConfig;
    let (device, name) = scalemake_torch::device::resolve(device_spec)?;
    let shape = ModelShape::preset(preset, vocab).ok_or_else(|| format!("unknown preset {preset}"))?;
    // Gradients exist after one backward; each variant then updates `steps` times.
    let prepare = || {
        let vs = nn::VarStore::new(device);
        let model = Gpt::new(&vs.root(), &shape, Kind::Float);
        let x = Tensor::randint(vocab, [1, 8], (Kind::Int64, device));
        (vs, model, x)
    };
    let optim = OptimSpec::constant(1e-4);

    let (vs, model, x) = prepare();
    let mut flat = scalemake_torch::train::flat::FlatParams::new(&vs);
    model.loss(&x, &x, true).backward();
    let mut adam = scalemake_torch::train::flat::Adam::new(&flat, optim.beta1, optim.beta2, optim.eps, 0.0);
    let time = |f: &mut dyn FnMut()| mean_ms(steps, device, f);
    let flat_ms = time(&mut || {
        let _norm = flat.clip_grad_norm(1.0);
        adam.update(&mut flat, 1e-4);
    });
    drop((flat, adam, model, vs));

    let (vs, model, x) = prepare();
    let mut opt = nn::Adam { beta1: optim.beta1, beta2: optim.beta2, wd: 0.0, eps: optim.eps, amsgrad: false }
        .build(&vs, 1e-4)
        .map_err(|e| e.to_string())?;
    model.loss(&x, &x, true).backward();
    let per_tensor_ms = time(&mut || {
        opt.clip_grad_norm(1.0);
        opt.step();
    });
    Ok(serde_json::json!({
        "preset": preset, "device": name, "parameter_tensors": vs.trainable_variables().len(),
        "flat_ms": flat_ms, "per_tensor_ms": per_tensor_ms, "speedup": per_tensor_ms / flat_ms,
    }))
}

/// Times the Hadamard kernels on CUDA against a device-to-device copy of
/// the same tensor, in the same process, as JSON:
/// - the transform, per element type (bf16, fp16, fp32) and size `dims`
///   (81,920 rows up to d = 8,192, then as many bytes): forward alone, and
///   forward + backward (the backward is the same kernel on the gradient,
///   which is what the autograd function runs), and the Kronecker
///   reference's forward;
/// - the FastFood projections of `fastfood_widths` (d → 4d and 4d → d,
///   bf16, 81,920 rows): the fused kernel against the layer's tensor
///   operations (the transform kernel inside), forward and forward +
///   backward (of the output's dot product with a fixed tensor, the same
///   for both), against a copy of the input plus one of the output.
pub fn bench_hadamard(
    device_spec: &str,
    dims: &[i64],
    fastfood_widths: &[i64],
    reps: usize,
) -> Result<serde_json::Value, String> {
    use scalemake_torch::model::variants::hadamard::{hadamard, kernel_enabled, reference};
    use scalemake_torch::model::variants::FastfoodLinear;
    let (device, name) = scalemake_torch::device::resolve(device_spec)?;
    if !device.is_cuda() {
        return Err("bench-hadamard needs a CUDA device".into());
    }
    if !kernel_enabled() {
        return Err("bench-hadamard needs the CUDA kernels: built with SCALEMAKE_CUDA_BUILD=1 scripts/setup.sh, and SCALEMAKE_HADAMARD_KERNEL not off".into());
    }
    let time = |f: &mut dyn FnMut()| mean_ms(reps, device, f);
    let mut transform = Vec::new();
    for kind in [Kind::BFloat16, Kind::Half, Kind::Float] {
        for &d in dims {
            let rows = 80 * 1024 * 8192.min(d) / d;
            let x = Tensor::randn([rows, d], (Kind::Float, device)).to_kind(kind);
            let g = Tensor::randn([rows, d], (Kind::Float, device)).to_kind(kind);
            let mut y = x.empty_like();
            let copy_ms = time(&mut || {
                y.copy_(&x);
            });
            let forward_ms = time(&mut || {
                let _ = hadamard(&x, true);
            });
            let both_ms = time(&mut || {
                let _ = hadamard(&x, true);
                let _ = hadamard(&g, true);
            });
            let reference_ms = time(&mut || {
                let _ = reference(&x, true);
            });
            let bytes = 2.0 * (rows * d) as f64 * kind.elt_size_in_bytes() as f64;
            transform.push(serde_json::json!({
                "dtype": format!("{kind:?}"), "d": d, "rows": rows, "copy_ms": copy_ms, "forward_ms": forward_ms,
                "forward_backward_ms": both_ms, "reference_forward_ms": reference_ms,
                "copy_tb_per_s": bytes / copy_ms / 1e9, "forward_tb_per_s": bytes / forward_ms / 1e9,
                "forward_over_copy": forward_ms / copy_ms, "forward_backward_over_copy": both_ms / copy_ms,
                "reference_over_kernel": reference_ms / forward_ms,
            }));
        }
    }
    let mut fastfood = Vec::new();
    for &d in fastfood_widths {
        for (in_dim, out_dim) in [(d, 4 * d), (4 * d, d)] {
            let rows = 80 * 1024;
            let vs = tch::nn::VarStore::new(device);
            let layer = FastfoodLinear::new(vs.root(), in_dim, out_dim, 0.02);
            let x = Tensor::randn([rows, in_dim], (Kind::BFloat16, device));
            let out = Tensor::randn([rows, out_dim], (Kind::BFloat16, device));
            let (mut x_copy, mut out_copy) = (x.empty_like(), out.empty_like());
            let copy_ms = time(&mut || {
                x_copy.copy_(&x);
                out_copy.copy_(&out);
            });
            let xg = x.detach().set_requires_grad(true);
            let timed = |forward: &dyn Fn(&Tensor) -> Tensor| {
                let forward_ms = time(&mut || {
                    let _ = tch::no_grad(|| forward(&x));
                });
                let both_ms = time(&mut || {
                    (forward(&xg) * &out).sum(Kind::Float).backward();
                });
                (forward_ms, both_ms)
            };
            let (fused_ms, fused_both_ms) = timed(&|x| layer.forward(x, Kind::BFloat16));
            let (unfused_ms, unfused_both_ms) = timed(&|x| layer.forward_unfused(x, Kind::BFloat16));
            fastfood.push(serde_json::json!({
                "in": in_dim, "out": out_dim, "rows": rows, "copy_in_and_out_ms": copy_ms,
                "fused_forward_ms": fused_ms, "fused_forward_backward_ms": fused_both_ms,
                "unfused_forward_ms": unfused_ms, "unfused_forward_backward_ms": unfused_both_ms,
                "fused_forward_over_copy": fused_ms / copy_ms, "unfused_over_fused_forward": unfused_ms / fused_ms,
                "unfused_over_fused_forward_backward": unfused_both_ms / fused_both_ms,
            }));
        }
    }
    Ok(serde_json::json!({ "device": name, "transform": transform, "fastfood_bf16": fastfood }))
}

/// Checks the CUDA Hadamard kernel against the reference on GPU 0, printing
/// one line per case.
pub fn check_hadamard() -> Result<(), String> {
    if !scalemake_torch::device::cuda_ready() {
        return Err("check-hadamard needs a CUDA device".into());
    }
    #[cfg(hadamard_cuda)]
    {
        for line in scalemake_torch::model::variants::hadamard::kernel::check_against_reference(0)? {
            println!("{line}");
        }
        for line in scalemake_torch::model::variants::check_fastfood_kernel(0)? {
            println!("{line}");
        }
        Ok(())
    }
    #[cfg(not(hadamard_cuda))]
    Err("this build has no CUDA kernel: build with SCALEMAKE_CUDA_BUILD=1 scripts/setup.sh".into())
}
