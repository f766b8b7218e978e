//! The compiled training step: forward and backward of one micro-batch as
//! one AOTInductor package (`.pt2`), run from the worker.
//!
//! tch launches every elementwise op as its own kernel; PyTorch's inductor
//! fuses them, which is the whole of `torch.compile`'s lead over eager on a
//! GPU. So the step is exported once per model shape by
//! `torch-worker/python/compile_step.py` (a mirror of `crate::model` over
//! the worker's own tensor names) and run here through a small C++ shim
//! (`csrc/compiled_step.cpp`) around `torch::inductor::AOTIModelPackageLoader`.
//! Everything else of a step (accumulation, clipping, flat Adam, schedule)
//! stays in [`super::Trainer`].
//!
//! The package maps `(flat_params, *frozen, idx, targets)` to `(loss,
//! flat_grads)`: the parameters are inputs, so one package serves every step
//! of every run of the shape; frozen tensors (doped layers, FastFood
//! permutations) are inputs too, in name order. Dropout draws from
//! libtorch's default generator, which the training loop reseeds every step.

use std::ffi::{c_char, c_void, CStr, CString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use scalemake::train::compile::{CompileJob, CompileOutcome, CompileRecord, StepCheck, PACKAGE_FILE};
use scalemake::train::job::Precision;
use scalemake::train::ModelShape;
use tch::{nn, Device, Kind, Tensor};

use super::flat::FlatParams;
use crate::model::gpt::Gpt;

extern "C" {
    fn scalemake_package_load(
        path: *const c_char,
        device_index: i32,
        error: *mut c_char,
        error_len: usize,
    ) -> *mut c_void;
    fn scalemake_package_free(loader: *mut c_void);
    fn scalemake_package_run(
        loader: *mut c_void,
        inputs: *const *const torch_sys::C_tensor,
        n_inputs: usize,
        outputs: *mut *mut torch_sys::C_tensor,
        max_outputs: usize,
        error: *mut c_char,
        error_len: usize,
    ) -> std::ffi::c_long;
}

/// Room for a C++ exception's message.
const ERROR_LEN: usize = 4096;

fn message(buffer: &[u8]) -> String {
    CStr::from_bytes_until_nul(buffer).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A loaded package and the frozen tensors it takes after the parameters.
pub struct CompiledStep {
    loader: *mut c_void,
    frozen: Vec<Tensor>,
}

impl CompiledStep {
    /// Loads `package` for the model whose variables live in `vs` (on the
    /// package's device).
    pub fn load(package: &Path, vs: &nn::VarStore) -> Result<Self, String> {
        crate::device::load_torch_library("libtorch.so")?;
        let path = CString::new(package.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("{}: a path with a NUL byte", package.display()))?;
        let device_index = match vs.device() {
            Device::Cuda(i) => i as i32,
            _ => -1,
        };
        let mut error = vec![0u8; ERROR_LEN];
        // SAFETY: valid C strings and a buffer of the length given.
        let loader =
            unsafe { scalemake_package_load(path.as_ptr(), device_index, error.as_mut_ptr().cast(), error.len()) };
        if loader.is_null() {
            return Err(format!("cannot load {}: {}", package.display(), message(&error)));
        }
        Ok(CompiledStep { loader, frozen: frozen_tensors(vs).into_iter().map(|(_, t)| t).collect() })
    }

    /// Mean loss over the micro-batch and the gradient of the parameters in
    /// `flat`'s layout, both still on the device.
    pub fn run(&self, flat: &Tensor, idx: &Tensor, targets: &Tensor) -> Result<(Tensor, Tensor), String> {
        // The package reads its inputs with the strides it was compiled
        // for (contiguous), and batches are narrowed views of (B, T+1) rows.
        let (idx, targets) = (idx.contiguous(), targets.contiguous());
        let mut inputs: Vec<*const torch_sys::C_tensor> = vec![flat.as_ptr()];
        inputs.extend(self.frozen.iter().map(Tensor::as_ptr));
        inputs.extend([idx.as_ptr(), targets.as_ptr()]);
        let mut outputs: [*mut torch_sys::C_tensor; 2] = [std::ptr::null_mut(); 2];
        let mut error = vec![0u8; ERROR_LEN];
        // SAFETY: the inputs are live tensors for the call; the shim writes at most 2 outputs.
        let n = unsafe {
            scalemake_package_run(
                self.loader,
                inputs.as_ptr(),
                inputs.len(),
                outputs.as_mut_ptr(),
                outputs.len(),
                error.as_mut_ptr().cast(),
                error.len(),
            )
        };
        if n < 0 {
            return Err(format!("the compiled step failed: {}", message(&error)));
        }
        // SAFETY: the shim returned `n` new tensors that we now own.
        let owned: Vec<Tensor> = outputs[..n as usize].iter().map(|&p| unsafe { Tensor::from_ptr(p) }).collect();
        match <[Tensor; 2]>::try_from(owned) {
            Ok([loss, grads]) => Ok((loss, grads)),
            Err(got) => Err(format!("the compiled step returned {} outputs, not (loss, gradients)", got.len())),
        }
    }
}

impl Drop for CompiledStep {
    fn drop(&mut self) {
        // SAFETY: made by scalemake_package_load and freed once.
        unsafe { scalemake_package_free(self.loader) }
    }
}

/// The model's tensors that are not trained, in name order: the package's
/// inputs after the flat parameters.
fn frozen_tensors(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut frozen: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| !t.requires_grad()).collect();
    frozen.sort_by(|a, b| a.0.cmp(&b.0));
    frozen
}

fn kind_name(kind: Kind) -> Result<&'static str, String> {
    match kind {
        Kind::Float => Ok("float"),
        Kind::BFloat16 => Ok("bfloat16"),
        Kind::Int64 => Ok("int64"),
        other => Err(format!("a frozen tensor of kind {other:?} cannot be exported")),
    }
}

/// What the exporter is told about the model: its shape and exactly the
/// tensors the package will be given, in order.
fn export_spec(
    shape: &ModelShape,
    precision: Precision,
    micro_batch: i64,
    device: Device,
    flat: &FlatParams,
    vs: &nn::VarStore,
) -> Result<serde_json::Value, String> {
    let frozen: Result<Vec<_>, String> =
        frozen_tensors(vs).into_iter().map(|(name, t)| Ok((name, t.size(), kind_name(t.kind())?))).collect();
    Ok(serde_json::json!({
        "model": shape,
        "compute": if precision == Precision::Bf16 { "bfloat16" } else { "float" },
        "device": match device { Device::Cuda(_) => "cuda", _ => "cpu" },
        "micro_batch": micro_batch,
        "trainable": flat.layout,
        "frozen": frozen?,
    }))
}

/// The Python that compiles: `$SCALEMAKE_PYTHON`, else that of the venv
/// the linked libtorch comes from (`<venv>/lib/pythonX.Y/site-packages/torch/lib`),
/// else `python3` (a machine whose torch is on its path).
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SCALEMAKE_PYTHON") {
        return PathBuf::from(p);
    }
    let venv_python = crate::device::libtorch_lib_dir()
        .and_then(|lib| lib.ancestors().nth(5).map(|venv| venv.join("bin/python")))
        .filter(|p| p.is_file());
    venv_python.unwrap_or_else(|| PathBuf::from("python3"))
}

/// A model of `shape` on `device` with its flat buffers, as training builds it.
fn build(shape: &ModelShape, precision: Precision, device: Device, seed: i64) -> (nn::VarStore, Gpt, FlatParams) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(device);
    let model = Gpt::new(&vs.root(), shape, if precision == Precision::Bf16 { Kind::BFloat16 } else { Kind::Float });
    let flat = FlatParams::new(&vs);
    (vs, model, flat)
}

/// Exports and compiles the step `job` describes into `job.out`, then
/// checks it against the eager step and times both. A model that cannot be
/// exported is not an error: the record says why, and training falls back
/// to eager. Only I/O failures are errors.
pub fn compile(job: &CompileJob) -> Result<CompileRecord, String> {
    if job.threads > 0 {
        tch::set_num_threads(job.threads as i32);
    }
    // A device that is not there is the run's to report; the step just is not compiled.
    let (device, device_name) = match crate::device::resolve(&job.device) {
        Ok(found) => found,
        Err(reason) => return Ok(CompileRecord::fallback(&job.device, crate::device::libtorch_version(), reason)),
    };
    let (vs, model, mut flat) = build(&job.model, job.precision, device, 0);
    let spec = export_spec(&job.model, job.precision, job.micro_batch, device, &flat, &vs)?;
    fs::create_dir_all(&job.work).map_err(|e| format!("{}: {e}", job.work.display()))?;
    let spec_path = job.work.join("export-spec.json");
    fs::write(&spec_path, serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", spec_path.display()))?;

    let staged = job.work.join("package");
    let _ = fs::remove_dir_all(&staged);
    let started = Instant::now();
    let python = python();
    eprintln!("compiling the training step with {} {}", python.display(), job.script.display());
    let status = Command::new(&python).arg(&job.script).arg(&spec_path).arg(&staged).status();
    let compile_seconds = started.elapsed().as_secs_f64();
    let mut record = CompileRecord {
        outcome: CompileOutcome::Compiled,
        device: device_name,
        torch: crate::device::libtorch_version(),
        compile_seconds,
        check: None,
        eager_ms: None,
        compiled_ms: None,
    };
    let failed = match status {
        Err(e) => Some(format!("cannot run {}: {e}", python.display())),
        Ok(s) if !s.success() => Some(format!("the exporter failed ({s}); its output is in this log")),
        Ok(_) => None,
    };
    if let Some(reason) = failed {
        eprintln!("falling back to the eager step: {reason}");
        record.outcome = CompileOutcome::Fallback { reason };
        return Ok(record);
    }
    for file in [PACKAGE_FILE, "export.json"] {
        fs::rename(staged.join(file), job.out.join(file))
            .map_err(|e| format!("{}: {e}", staged.join(file).display()))?;
    }
    let package = job.out.join(PACKAGE_FILE);
    let step = match CompiledStep::load(&package, &vs) {
        Ok(step) => step,
        Err(reason) => {
            let _ = fs::remove_file(&package);
            record.outcome = CompileOutcome::Fallback { reason };
            return Ok(record);
        }
    };
    let rows = job.micro_batch;
    let context = job.model.context;
    let batch = Tensor::randint(job.model.vocab_size, [rows, context + 1], (Kind::Int64, device));
    let (idx, targets) = (batch.narrow(1, 0, context), batch.narrow(1, 1, context));
    match check_against_eager(&step, &model, &mut flat, &idx, &targets) {
        Ok(check) => record.check = Some(check),
        Err(reason) => {
            let _ = fs::remove_file(&package);
            record.outcome = CompileOutcome::Fallback { reason };
            return Ok(record);
        }
    }
    let (eager, compiled) = time_both(&step, &model, &mut flat, &idx, &targets, job.timed_steps, device)?;
    record.eager_ms = Some(eager);
    record.compiled_ms = Some(compiled);
    eprintln!(
        "forward+backward of {rows}×{context} tokens: eager {eager:.2} ms, compiled {compiled:.2} ms ({:.2}×)",
        eager / compiled
    );
    Ok(record)
}

/// The eager step's loss and flat gradients for one micro-batch.
fn eager_step(model: &Gpt, flat: &mut FlatParams, idx: &Tensor, targets: &Tensor, train: bool) -> (Tensor, Tensor) {
    flat.zero_grad();
    let loss = model.loss(idx, targets, train);
    loss.backward();
    (loss.detach(), flat.grads.copy())
}

/// Loss and gradients of the package against the eager model on one batch.
/// Without dropout the two must agree to rounding (gradients by the L2
/// distance of the flat buffers). With dropout they draw different masks,
/// so they must agree as two dropout samples do: losses within 5%, and
/// gradient norms (not the gradients, which the masks dominate at
/// initialisation) within 50%.
fn check_against_eager(
    step: &CompiledStep,
    model: &Gpt,
    flat: &mut FlatParams,
    idx: &Tensor,
    targets: &Tensor,
) -> Result<StepCheck, String> {
    tch::manual_seed(1);
    let (eager_loss, eager_grads) = eager_step(model, flat, idx, targets, true);
    tch::manual_seed(1);
    let (loss, grads) = tch::no_grad(|| step.run(&flat.params, idx, targets))?;
    let value = |t: &Tensor| t.to_kind(Kind::Double).double_value(&[]);
    let dropout = model.shape().dropout > 0.0;
    let loss_rel = (value(&loss) - value(&eager_loss)).abs() / value(&eager_loss).abs().max(1e-12);
    let eager_norm = value(&eager_grads.norm()).max(1e-12);
    let grad_rel = if dropout {
        (value(&grads.norm()) - eager_norm).abs() / eager_norm
    } else {
        value(&(&grads - &eager_grads).norm()) / eager_norm
    };
    let check = StepCheck {
        loss_relative: loss_rel,
        gradient_relative: grad_rel,
        dropout,
        bf16: model.compute_kind() == Kind::BFloat16,
    };
    let (loss_tol, grad_tol) = check.tolerances();
    if !(loss_rel <= loss_tol && grad_rel <= grad_tol) {
        return Err(format!(
            "the compiled step disagrees with the eager one: loss {loss_rel:.2e} relative (at most {loss_tol:.0e}), gradients {grad_rel:.2e} (at most {grad_tol:.0e})"
        ));
    }
    Ok(check)
}

/// Milliseconds per forward+backward, eager and compiled, measured side by
/// side (after two warm-up passes each) on `device`.
fn time_both(
    step: &CompiledStep,
    model: &Gpt,
    flat: &mut FlatParams,
    idx: &Tensor,
    targets: &Tensor,
    steps: usize,
    device: Device,
) -> Result<(f64, f64), String> {
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let steps = steps.max(1);
    let mut eager_ms = f64::INFINITY;
    let mut compiled_ms = f64::INFINITY;
    // Alternating rounds, best of each: the machine's noise hits both alike.
    for round in 0..3 {
        let start = Instant::now();
        for _ in 0..if round == 0 { 2 } else { steps } {
            let _ = eager_step(model, flat, idx, targets, true);
        }
        sync();
        if round > 0 {
            eager_ms = eager_ms.min(start.elapsed().as_secs_f64() * 1e3 / steps as f64);
        }
        let start = Instant::now();
        for _ in 0..if round == 0 { 2 } else { steps } {
            let _ = tch::no_grad(|| step.run(&flat.params, idx, targets))?;
        }
        sync();
        if round > 0 {
            compiled_ms = compiled_ms.min(start.elapsed().as_secs_f64() * 1e3 / steps as f64);
        }
    }
    Ok((eager_ms, compiled_ms))
}
