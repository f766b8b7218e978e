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

use super::train::{precision, resolve_device, spawn_worker};
use super::{NodeCtx, NodeError, NodeKind, Progress, Resources};
use crate::hash::ContentHash;
use crate::settings::{Field, FieldType, Schema, Value};
use crate::train::compile::{CompileJob, CompileMode, CompileOutcome, CompileRecord, RECORD_FILE};
use crate::train::job::Precision;
use crate::train::{Head, ModelShape, Variant, VARIANT_NAMES};

/// The exporter (`torch-worker/python/compile_step.py`), carried inside the
/// engine so that it always matches the engine that keys its output, and
/// written into the node's work directory for the worker to run.
pub const EXPORTER: &str = include_str!("../../torch-worker/python/compile_step.py");

/// The `compile` kind.
pub struct Compile {
    schema: Schema,
}

impl Compile {
    /// Creates the kind with its schema.
    pub fn new() -> Self {
        let int = |min| FieldType::Int { min };
        Compile {
            schema: Schema::new(vec![
                Field::required("variant", FieldType::Enum(VARIANT_NAMES), "the model's variant"),
                Field::required("n_layer", int(1), "transformer blocks"),
                Field::required("n_head", int(1), "attention heads"),
                Field::required("d_model", int(2), "width"),
                Field::required("context", int(2), "tokens per sequence"),
                Field::required("vocab_size", int(1), "the tokenizer's vocabulary"),
                Field::required(
                    "head",
                    FieldType::Enum(&["tied", "untied"]),
                    "output head tied to the embedding or not",
                ),
                Field::required("blocks", int(1), "blocks of the block-diagonal MLP"),
                Field::required("dropout", FieldType::Float, "dropout probability (part of the graph)"),
                Field::required("precision", FieldType::Enum(&["fp32", "bf16"]), "compute precision"),
                Field::required("micro_batch", int(1), "sequences per forward pass (the package's batch dimension)"),
                Field::required(
                    "mode",
                    FieldType::Enum(&["auto", "on"]),
                    "auto: compile on a GPU, keep the CPU eager; on: compile on any device",
                ),
                Field::default("device", FieldType::Str, Value::Str("auto".into()), "auto, cpu, cuda or cuda:N")
                    .metadata(),
                Field::default("threads", int(0), Value::Int(0), "CPU threads for libtorch (0: its default)")
                    .metadata(),
            ]),
        }
    }

    /// The params of the helper that compiles the step of a train node.
    pub fn helper_params(
        shape: &ModelShape,
        precision: Precision,
        micro_batch: i64,
        mode: CompileMode,
        device: &str,
    ) -> Value {
        let mut map = std::collections::BTreeMap::new();
        let mut set = |k: &str, v: Value| {
            map.insert(k.to_string(), v);
        };
        set("variant", Value::Str(shape.variant.name().into()));
        set("n_layer", Value::Int(shape.n_layer));
        set("n_head", Value::Int(shape.n_head));
        set("d_model", Value::Int(shape.d_model));
        set("context", Value::Int(shape.context));
        set("vocab_size", Value::Int(shape.vocab_size));
        set("head", Value::Str(if shape.head == Head::Tied { "tied" } else { "untied" }.into()));
        set("blocks", Value::Int(shape.blocks));
        set("dropout", Value::Float(shape.dropout));
        set("precision", Value::Str(if precision == Precision::Bf16 { "bf16" } else { "fp32" }.into()));
        set("micro_batch", Value::Int(micro_batch));
        set("mode", Value::Str(if mode == CompileMode::On { "on" } else { "auto" }.into()));
        set("device", Value::Str(device.into()));
        set("threads", Value::Int(0));
        Value::Map(map)
    }

    /// A readable, unique instance name for a helper with `params`:
    /// `compile[baseline,L3,d64,h2,T128,V8192,b8,fp32]`, with a digest
    /// where the readable part would not tell two apart.
    pub fn helper_id(params: &Value) -> String {
        let get = |k: &str| params.get_path(k).map(ToString::to_string).unwrap_or_default();
        let digest = ContentHash::of(params.to_string().as_bytes());
        format!(
            "compile[{},L{},d{},h{},T{},V{},b{},{},{}]",
            get("variant").trim_matches('"'),
            get("n_layer"),
            get("d_model"),
            get("n_head"),
            get("context"),
            get("vocab_size"),
            get("micro_batch"),
            get("precision").trim_matches('"'),
            &digest.hex()[..8]
        )
    }
}

impl Default for Compile {
    fn default() -> Self {
        Self::new()
    }
}

/// The model shape validated params describe.
fn shape(params: &Value) -> Result<ModelShape, String> {
    let int = |k: &str| params.get_path(k).and_then(Value::as_i64).ok_or_else(|| format!("`{k}` is missing"));
    let text = |k: &str| params.get_path(k).and_then(Value::as_str).unwrap_or_default();
    let shape = ModelShape {
        vocab_size: int("vocab_size")?,
        n_layer: int("n_layer")?,
        n_head: int("n_head")?,
        d_model: int("d_model")?,
        context: int("context")?,
        dropout: params.get_path("dropout").and_then(Value::as_f64).unwrap_or(0.0),
        head: if text("head") == "untied" { Head::Untied } else { Head::Tied },
        variant: Variant::from_name(text("variant")).ok_or_else(|| format!("unknown variant `{}`", text("variant")))?,
        blocks: int("blocks")?,
    };
    shape.check()?;
    Ok(shape)
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
        match params.get_path("device").and_then(Value::as_str).unwrap_or("auto") {
            "cpu" => Resources::default(),
            "auto" => Resources { cpu: 1, gpu: 1, gpu_optional: true },
            _ => Resources { cpu: 1, gpu: 1, gpu_optional: false },
        }
    }

    fn environment(&self, params: &Value) -> Option<Value> {
        Some(target(params.get_path("device").and_then(Value::as_str).unwrap_or("auto"), crate::device::platform()))
    }

    fn run(&self, ctx: &mut NodeCtx<'_>) -> Result<(), NodeError> {
        let params = ctx.params().clone();
        let shape = shape(&params).map_err(NodeError::Failed)?;
        let device = resolve_device(params.get_path("device").and_then(Value::as_str).unwrap_or("auto"), ctx.gpus())
            .map_err(NodeError::Failed)?;
        let mode = params.get_path("mode").and_then(Value::as_str).and_then(CompileMode::from_name);
        let record_path = ctx.out_dir().join(RECORD_FILE);
        if device == "cpu" && mode != Some(CompileMode::On) {
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
            precision: precision(&params),
            micro_batch: params.get_path("micro_batch").and_then(Value::as_i64).unwrap_or(1),
            device,
            threads: params.get_path("threads").and_then(Value::as_i64).unwrap_or(0).max(0) as u64,
            timed_steps: 5,
            script,
            out: ctx.out_dir().to_path_buf(),
            work: ctx.work_dir().to_path_buf(),
        };
        let job_path = ctx.work_dir().join("compile-job.json");
        let text = serde_json::to_vec_pretty(&job).map_err(|e| NodeError::Failed(e.to_string()))?;
        std::fs::write(&job_path, text).map_err(|e| NodeError::io(&job_path, e))?;

        let mut child = spawn_worker(ctx, "compile", &job_path, Stdio::null())?;
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
        assert_eq!(Compile::helper_id(&a), Compile::helper_id(&b));
        assert_ne!(Compile::helper_id(&a), Compile::helper_id(&c));
        assert_ne!(Compile::helper_id(&a), Compile::helper_id(&d));
        assert!(
            Compile::helper_id(&a).starts_with("compile[baseline,L2,d64,h2,T64,V400,b4,fp32,"),
            "{}",
            Compile::helper_id(&a)
        );
        // Every param a helper sets is one its schema knows, so it validates like a written node.
        let kind = Compile::new();
        let Value::Map(map) = &a else { panic!("params are a map") };
        for key in map.keys() {
            assert!(kind.schema().fields.iter().any(|f| f.name == key.as_str()), "{key} is not in the schema");
        }
        assert_eq!(shape, super::shape(&a).unwrap());
    }
}
