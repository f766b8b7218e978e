//! `compile`: a model's training step compiled ahead of time (AOTInductor),
//! the package `train` nodes run instead of the eager step.
//!
//! `train` nodes with `compile: auto | on` get one as a helper (see
//! [`NodeKind::helper`]): an input that is built before them when they
//! build, read by them, and outside their key, since the compiled step
//! trains the same model to floating-point noise, as a GPU does a CPU's
//! run. Nodes of one shape share one helper, so a sweep over learning rates,
//! seeds or budgets compiles once. Its key is what changes the graph:
//! variant and shape, vocabulary, context, micro-batch, precision, and (from
//! [`NodeKind::environment`]) the torch version, the device type with its
//! compute capability, and the exporter's own digest.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::worker::{resolve_device, spawn_worker};
use super::{Helper, NodeCtx, NodeError, NodeKind, Progress, Resources};
use crate::hash::ContentHash;
use crate::settings::{settings, to_value, FieldType, Schema, Settings, Value};
use crate::train::compile::{CompileJob, CompileMode, CompileOutcome, CompileRecord, RECORD_FILE};
use crate::train::job::Precision;
use crate::train::{Head, ModelShape, Variant, VARIANT_NAMES};

/// The exporter (`torch-worker/python/compile_step.py`), carried inside the
/// engine so that it always matches the engine that keys its output, and
/// written into the node's work directory for the worker to run.
pub const EXPORTER: &str = include_str!("../../torch-worker/python/compile_step.py");

settings! {
    /// The settings of a `compile` node: everything that shapes the graph.
    pub struct CompileParams {
        /// the model's variant
        variant: Variant = [FieldType::Enum(VARIANT_NAMES)] required,
        /// transformer blocks
        n_layer: i64 = [FieldType::Int { min: 1 }] required,
        /// attention heads
        n_head: i64 = [FieldType::Int { min: 1 }] required,
        /// width
        d_model: i64 = [FieldType::Int { min: 2 }] required,
        /// tokens per sequence
        context: i64 = [FieldType::Int { min: 2 }] required,
        /// the tokenizer's vocabulary
        vocab_size: i64 = [FieldType::Int { min: 1 }] required,
        /// output head tied to the embedding or not
        head: Head = [FieldType::Enum(&["tied", "untied"])] required,
        /// blocks of the block-diagonal MLP
        blocks: i64 = [FieldType::Int { min: 1 }] required,
        /// dropout probability (part of the graph)
        dropout: f64 = [FieldType::Float] required,
        /// compute precision
        precision: Precision = [FieldType::Enum(&["fp32", "bf16"])] required,
        /// sequences per forward pass (the package's batch dimension)
        micro_batch: i64 = [FieldType::Int { min: 1 }] required,
        /// auto: compile on a GPU, keep the CPU eager; on: compile on any device
        mode: CompileMode = [FieldType::Enum(&["auto", "on"])] required,
        /// auto, cpu, cuda or cuda:N
        device: String = [FieldType::Str] default("auto") metadata,
        /// CPU threads for libtorch (0: its default)
        threads: u64 = [FieldType::Int { min: 0 }] default(0) metadata,
    }
}

impl CompileParams {
    /// The model shape these settings describe.
    fn shape(&self) -> Result<ModelShape, String> {
        let shape = ModelShape {
            vocab_size: self.vocab_size,
            n_layer: self.n_layer,
            n_head: self.n_head,
            d_model: self.d_model,
            context: self.context,
            dropout: self.dropout,
            head: self.head,
            variant: self.variant,
            blocks: self.blocks,
        };
        shape.check()?;
        Ok(shape)
    }
}

/// The `compile` kind.
pub struct Compile {
    schema: Schema,
}

impl Compile {
    /// Creates the kind with its schema.
    pub fn new() -> Self {
        Compile { schema: CompileParams::schema() }
    }

    /// The settings of the helper that compiles the step of a train node.
    pub fn helper_params(
        shape: &ModelShape,
        precision: Precision,
        micro_batch: i64,
        mode: CompileMode,
        device: &str,
    ) -> CompileParams {
        CompileParams {
            variant: shape.variant,
            n_layer: shape.n_layer,
            n_head: shape.n_head,
            d_model: shape.d_model,
            context: shape.context,
            vocab_size: shape.vocab_size,
            head: shape.head,
            blocks: shape.blocks,
            dropout: shape.dropout,
            precision,
            micro_batch,
            // A train node's `off` makes no helper; `on` and `auto` are the helper's modes.
            mode: if mode == CompileMode::On { CompileMode::On } else { CompileMode::Auto },
            device: device.to_string(),
            threads: 0,
        }
    }

    /// The helper node that compiles with `params`, named readably and
    /// uniquely: `compile[baseline,L3,d64,h2,T128,V8192,b8,fp32,<digest>]`,
    /// the digest telling apart what the readable part would not.
    pub fn helper(params: &CompileParams) -> Helper {
        let value = to_value(params);
        Helper { kind: "compile", id: Self::helper_id(params, &value), params: value }
    }

    fn helper_id(params: &CompileParams, value: &Value) -> String {
        let digest = ContentHash::of(value.to_string().as_bytes());
        let precision = if params.precision == Precision::Bf16 { "bf16" } else { "fp32" };
        format!(
            "compile[{},L{},d{},h{},T{},V{},b{},{precision},{}]",
            params.variant.name(),
            params.n_layer,
            params.d_model,
            params.n_head,
            params.context,
            params.vocab_size,
            params.micro_batch,
            &digest.hex()[..8]
        )
    }
}

impl Default for Compile {
    fn default() -> Self {
        Self::new()
    }
}

/// What a compile is keyed on besides its params: `cpu`, or `cuda sm_90`
/// (the first visible GPU's compute capability) for a node that runs on a
/// GPU here, with the torch version and the exporter's digest.
fn target(device: &str, platform: &crate::device::Platform) -> Value {
    let on_gpu = device != "cpu" && platform.cuda_capability.is_some();
    let device = match (&platform.cuda_capability, on_gpu) {
        (Some(cap), true) => format!("cuda {cap}"),
        _ => "cpu".into(),
    };
    let mut map = std::collections::BTreeMap::new();
    map.insert("device".into(), Value::Str(device));
    map.insert("torch".into(), Value::Str(platform.torch.clone().unwrap_or_else(|| "unknown".into())));
    map.insert("exporter".into(), Value::Str(ContentHash::of(EXPORTER.as_bytes()).hex()[..16].to_string()));
    Value::Map(map)
}

impl NodeKind for Compile {
    fn name(&self) -> &'static str {
        "compile"
    }

    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    /// A GPU when it compiles for one (inductor's autotuning runs there),
    /// else the CPU cores libtorch and the C++ compiler use.
    fn resources_default(&self, params: &Value) -> Resources {
        let device = CompileParams::read(params).map(|p| p.device).unwrap_or_default();
        match device.as_str() {
            "cpu" => Resources::default(),
            "auto" => Resources { cpu: 1, gpu: 1, gpu_optional: true, tasks: 1 },
            _ => Resources { cpu: 1, gpu: 1, gpu_optional: false, tasks: 1 },
        }
    }

    fn environment(&self, params: &Value) -> Option<Value> {
        Some(target(&CompileParams::read(params).ok()?.device, crate::device::platform()))
    }

    fn run(&self, ctx: &mut NodeCtx<'_>) -> Result<(), NodeError> {
        let params: CompileParams = ctx.settings()?;
        let shape = params.shape().map_err(NodeError::Failed)?;
        let device = resolve_device(&params.device, ctx.gpus()).map_err(NodeError::Failed)?;
        let record_path = ctx.out_dir().join(RECORD_FILE);
        if device == "cpu" && params.mode != CompileMode::On {
            // Measured on the 2-core development VM (benches/RESULTS.md): the CPU
            // step is faster compiled, but a compile takes longer than the CPU
            // runs of this project train.
            let record = CompileRecord::fallback(
                "cpu",
                crate::device::platform().torch.clone(),
                "compile: auto keeps CPU training eager (a compile costs more than CPU-sized runs gain; `compile: on` compiles anyway)".into(),
            );
            let text = serde_json::to_vec_pretty(&record).map_err(|e| NodeError::Failed(e.to_string()))?;
            return std::fs::write(&record_path, text).map_err(|e| NodeError::io(&record_path, e));
        }
        let script = ctx.work_dir().join("compile_step.py");
        std::fs::write(&script, EXPORTER).map_err(|e| NodeError::io(&script, e))?;
        let job = CompileJob {
            model: shape,
            precision: params.precision,
            micro_batch: params.micro_batch,
            device,
            threads: params.threads,
            timed_steps: 5,
            script,
            out: ctx.out_dir().to_path_buf(),
            work: ctx.work_dir().to_path_buf(),
        };
        let job_path = ctx.work_dir().join("compile-job.json");
        let text = serde_json::to_vec_pretty(&job).map_err(|e| NodeError::Failed(e.to_string()))?;
        std::fs::write(&job_path, text).map_err(|e| NodeError::io(&job_path, e))?;

        let mut child = spawn_worker(ctx, ("compile", &job_path), &params.device, Stdio::null())?;
        let started = Instant::now();
        let status = loop {
            if ctx.is_cancelled() {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NodeError::Cancelled);
            }
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => return Err(NodeError::Failed(format!("waiting for the worker: {e}"))),
            }
            ctx.progress(Progress::Message(format!(
                "compiling the training step ({:.0} s)",
                started.elapsed().as_secs_f64()
            )));
            std::thread::sleep(Duration::from_millis(200));
        };
        if !status.success() {
            return Err(NodeError::Failed(format!("the worker's compile failed ({status}); see the log")));
        }
        let record = CompileRecord::read(ctx.out_dir()).map_err(NodeError::Failed)?;
        match (&record.outcome, record.eager_ms, record.compiled_ms) {
            (CompileOutcome::Compiled, Some(e), Some(c)) => ctx.add_summary(format!(
                "compiled in {:.0} s: {c:.2} ms per forward+backward against {e:.2} ms eager ({:.2}×) on {}",
                record.compile_seconds,
                e / c,
                record.device
            )),
            (CompileOutcome::Fallback { reason }, ..) => {
                ctx.add_summary(format!("not compiled, training runs eager: {reason}"))
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Platform;

    fn platform(torch: &str, cuda: Option<&str>) -> Platform {
        Platform { torch: Some(torch.into()), cuda_capability: cuda.map(str::to_string) }
    }

    #[test]
    fn the_key_follows_torch_and_the_gpu_but_not_a_cpu_runs_gpu() {
        let h100 = platform("2.11.0+cu130", Some("sm_90"));
        let key = |device: &str, p: &Platform| target(device, p).to_string();
        assert_ne!(key("auto", &h100), key("auto", &platform("2.12.0+cu130", Some("sm_90"))), "torch version");
        assert_ne!(key("auto", &h100), key("auto", &platform("2.11.0+cu130", Some("sm_80"))), "compute capability");
        assert!(key("auto", &h100).contains("cuda sm_90"), "{}", key("auto", &h100));
        // A run pinned to the CPU compiles for the CPU, GPU or not.
        assert_eq!(key("cpu", &h100), key("cpu", &platform("2.11.0+cu130", None)));
        assert_eq!(key("auto", &platform("2.11.0+cu130", None)), key("cpu", &h100));
    }

    #[test]
    fn helpers_of_one_shape_share_an_id_and_other_shapes_do_not() {
        let shape = ModelShape::preset("nano", 400).unwrap();
        let a = Compile::helper_params(&shape, Precision::Fp32, 4, CompileMode::On, "cpu");
        let b = Compile::helper_params(&shape, Precision::Fp32, 4, CompileMode::On, "cpu");
        let wider = ModelShape { d_model: 128, ..shape.clone() };
        let c = Compile::helper_params(&wider, Precision::Fp32, 4, CompileMode::On, "cpu");
        let d = Compile::helper_params(&shape, Precision::Bf16, 4, CompileMode::On, "cpu");
        assert_eq!(Compile::helper(&a).id, Compile::helper(&b).id);
        assert_ne!(Compile::helper(&a).id, Compile::helper(&c).id);
        assert_ne!(Compile::helper(&a).id, Compile::helper(&d).id);
        assert!(
            Compile::helper(&a).id.starts_with("compile[baseline,L2,d64,h2,T64,V400,b4,fp32,"),
            "{}",
            Compile::helper(&a).id
        );
        // The helper's settings read back as themselves, shape included.
        assert_eq!(CompileParams::read(&Compile::helper(&a).params).unwrap(), a);
        assert_eq!(shape, a.shape().unwrap());
    }
}
