//! `train`: trains a GPT on token shards, in the libtorch worker process.
//!
//! The node turns its params into a [`TrainJob`], runs
//! `scalemake-torch train job.json` and follows the worker's JSON events:
//! progress bar, metrics and summary come from them; the worker's own log
//! (stderr) goes to the node's log. The worker writes the artifact
//! (`model.safetensors`, `config.json`, `metrics/{steps,eval}.{csv,jsonl}`)
//! into the staging directory and its checkpoints into the work directory,
//! so a killed run resumes where its last checkpoint left it.
//!
//! Budgets are in tokens, like the paper's (409.6M warmup, 32G max).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use super::compile::Compile;
use super::shards::META_FILE;
use super::worker::{resolve_device, spawn_ranks};
use super::{ComputeBasis, Helper, NodeCtx, NodeError, NodeKind, Progress, Refusal, Resources, WorkEstimate};
use crate::data::shard::ShardsMeta;
use crate::settings::{settings, FieldType, Schema, Settings, Value};
use crate::track::mlflow::{self, Ending, Metric, RunSpec, Tracker};
use crate::train::compile::{CompileMode, CompileRecord, RECORD_FILE as COMPILE_RECORD};
use crate::train::job::{
    kept_checkpoint, BranchFrom, CompiledUse, DecayShape, EvalRow, Event, OptimSpec, Precision, Sampling, StepRow,
    TrainJob, Wsd, DECAY_SHAPE_NAMES,
};
use crate::train::record::{EVAL_FILE, STEPS_FILE, TENSORBOARD_DIR};
use crate::train::tfevents::EventWriter;
use crate::train::{Compute, Head, ModelShape, ParamCounts, Variant, PRESET_NAMES, VARIANT_NAMES};
use crate::units::thousands;

/// Params a cooldown branch must share with its source: they shape the
/// model, the data it sees and the rate up to the branch point.
const CONTINUED: &[&str] = &[
    "model",
    "variant",
    "context",
    "dropout",
    "batch_size",
    "seed",
    "precision",
    "optim.lr",
    "optim.beta1",
    "optim.beta2",
    "optim.eps",
    "optim.weight_decay",
    "optim.clip",
    "optim.warmup_tokens",
    "optim.schedule",
];

/// The paper's vocabulary, for planning a node whose tokenizer is not declared.
const PAPER_VOCAB: i64 = 50_262;

/// `optim.schedule`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Warmup, then a cosine to the floor (the paper's).
    Cosine,
    /// Warmup, the peak rate held, then a decay over the last `cooldown_tokens`.
    Wsd,
}

settings! {
    /// A train node's model shape: a preset and its overrides.
    pub struct ModelParams {
        /// size: nano, micro (CPU); Table 1 xxsmall … medium; Table 2 doped_*; Table 3 structured_*
        preset: String = [FieldType::Enum(PRESET_NAMES)] required,
        /// override the preset's number of blocks
        n_layer: Option<i64> = [FieldType::Int { min: 1 }] optional,
        /// override the preset's attention heads
        n_head: Option<i64> = [FieldType::Int { min: 1 }] optional,
        /// override the preset's width
        d_model: Option<i64> = [FieldType::Int { min: 2 }] optional,
        /// output head shares the embedding (tied, GPT-2's choice) or not
        head: Head = [FieldType::Enum(&["tied", "untied"])] default(Head::Tied),
        /// blocks of the block-diagonal MLP (blockdiag_hadamard; default 4)
        blocks: Option<i64> = [FieldType::Int { min: 1 }] optional,
    }
}

settings! {
    /// A train node's optimiser and learning-rate schedule.
    pub struct OptimParams {
        /// peak learning rate (paper: 5e-4; 3e-4 for Medium)
        lr: f64 = [FieldType::Float] default(5e-4),
        /// Adam β1
        beta1: f64 = [FieldType::Float] default(0.9),
        /// Adam β2 (GPT-3's 0.95; the paper does not say)
        beta2: f64 = [FieldType::Float] default(0.95),
        /// Adam ε
        eps: f64 = [FieldType::Float] default(1e-8),
        /// decoupled weight decay (paper: 0)
        weight_decay: f64 = [FieldType::Float] default(0.0),
        /// global gradient-norm clip (paper: 1.0; 0 disables)
        clip: f64 = [FieldType::Float] default(1.0),
        /// tokens of linear warmup (paper: 409.6M)
        warmup_tokens: u64 = [FieldType::Int { min: 0 }] default(409_600_000),
        /// tokens at which the cosine reaches its floor (default: max_tokens; paper: 32.8G)
        decay_tokens: Option<u64> = [FieldType::Int { min: 1 }] optional,
        /// the floor, as a fraction of lr
        final_lr_fraction: f64 = [FieldType::Float] default(0.1),
        /// cosine (the paper's; the default) or wsd: warmup, the peak rate held, then a decay over the last cooldown_tokens
        schedule: Option<Schedule> = [FieldType::Enum(&["cosine", "wsd"])] optional,
        /// wsd: tokens of the final decay, which ends at max_tokens
        cooldown_tokens: Option<u64> = [FieldType::Int { min: 1 }] optional,
        /// wsd: linear (the default), sqrt (1 − √p) or cosine
        decay_shape: Option<DecayShape> = [FieldType::Enum(DECAY_SHAPE_NAMES)] optional,
    }
}

settings! {
    /// Where else a train node's run is tracked.
    pub struct TrackingParams {
        /// MLflow tracking server the run logs params, metrics and artifact files to
        mlflow: String = [FieldType::HttpUrl] required,
        /// MLflow experiment (default: this experiment's name)
        experiment: Option<String> = [FieldType::Str] optional,
    }
}

settings! {
    /// The settings of a `train` node.
    pub struct TrainParams {
        /// model shape: a preset and optional overrides
        model: ModelParams = [FieldType::Struct(ModelParams::schema())] required,
        /// baseline, doped (frozen 6·d MLPs between trainable layers), fastfood, blockdiag_hadamard (default: the preset's)
        variant: Option<Variant> = [FieldType::Enum(VARIANT_NAMES)] optional,
        /// tokens per sequence (default: the preset's; paper: 1024)
        context: Option<i64> = [FieldType::Int { min: 2 }] optional,
        /// dropout on embeddings, attention and residuals (paper: 0.1)
        dropout: f64 = [FieldType::Float] default(0.1),
        /// Adam, warmup and cosine decay
        optim: OptimParams = [FieldType::Struct(OptimParams::schema())] default(Value::Null),
        /// sequences per optimiser step (paper: 80)
        batch_size: u64 = [FieldType::Int { min: 1 }] default(80),
        /// sequences per forward pass; gradients accumulate (default: batch_size)
        micro_batch: Option<u64> = [FieldType::Int { min: 1 }] optional,
        /// training budget in tokens (paper: 32G)
        max_tokens: u64 = [FieldType::Int { min: 1 }] required,
        /// token counts after which the run keeps its state in its artifact, for cooldown branches (`from:`)
        keep_checkpoints: Option<Vec<u64>> = [FieldType::List(Box::new(FieldType::Int { min: 1 }))] optional,
        /// a cooldown branch (`from:`): the source's kept checkpoint it starts from
        at_tokens: Option<u64> = [FieldType::Int { min: 1 }] optional,
        /// validation evaluations, log-spaced over the run
        eval_points: u64 = [FieldType::Int { min: 2 }] default(40),
        /// validation tokens per evaluation (a fixed prefix of the val split)
        eval_tokens: u64 = [FieldType::Int { min: 1 }] default(1u64 << 20),
        /// seed of initialisation, data order and dropout
        seed: u64 = [FieldType::Int { min: 0 }] default(0),
        /// order of training windows: random (uniform positions; the default) or epochs (a seeded shuffle of non-overlapping windows, each once before any twice)
        sampling: Option<Sampling> = [FieldType::Enum(&["random", "epochs"])] optional,
        /// fp32, or bf16 matmuls and attention with fp32 master weights
        precision: Precision = [FieldType::Enum(&["fp32", "bf16"])] default(Precision::Fp32),
        /// auto (a GPU if one is visible), cpu, cuda or cuda:N
        device: String = [FieldType::Str] default("auto") metadata,
        /// the training step compiled ahead of time (AOTInductor): auto (on a GPU, where measured faster), on, off
        compile: CompileMode = [FieldType::Enum(&CompileMode::NAMES)] default(CompileMode::Auto) metadata,
        /// seconds between checkpoints (0: off)
        checkpoint_seconds: f64 = [FieldType::Float] default(600.0) metadata,
        /// steps between checkpoints (0: off)
        checkpoint_steps: u64 = [FieldType::Int { min: 0 }] default(0) metadata,
        /// CPU threads for libtorch (0: its default; with devices, each rank's share of the cores)
        threads: u64 = [FieldType::Int { min: 0 }] default(0) metadata,
        /// data-parallel ranks: GPUs (one process each), or CPU processes; each takes an equal slice of every batch, so the result does not change
        devices: u64 = [FieldType::Int { min: 1 }] default(1) metadata,
        /// seconds a rank waits for the others at a gradient exchange before the run fails
        collective_timeout: f64 = [FieldType::Float] default(600.0) metadata,
        /// the device's peak TFLOP/s, for MFU where it is not known (CPUs)
        peak_tflops: Option<f64> = [FieldType::Float] optional metadata,
        /// also track the run elsewhere: `{mlflow: URL}` (see Track in MLflow)
        tracking: Option<TrackingParams> = [FieldType::Struct(TrackingParams::schema())] optional metadata,
    }
}

impl TrainParams {
    /// The model shape these settings describe, with `vocab_size` tokens.
    fn model_shape(&self, vocab_size: i64) -> Result<ModelShape, String> {
        let m = &self.model;
        let mut shape =
            ModelShape::preset(&m.preset, vocab_size).ok_or_else(|| format!("unknown preset `{}`", m.preset))?;
        shape.n_layer = m.n_layer.unwrap_or(shape.n_layer);
        shape.n_head = m.n_head.unwrap_or(shape.n_head);
        shape.d_model = m.d_model.unwrap_or(shape.d_model);
        shape.context = self.context.unwrap_or(shape.context);
        shape.dropout = self.dropout;
        shape.head = m.head;
        shape.variant = self.variant.unwrap_or(shape.variant);
        shape.blocks = m.blocks.unwrap_or(shape.blocks);
        shape.check()?;
        Ok(shape)
    }

    /// Sequences per forward pass.
    fn micro_batch(&self) -> u64 {
        self.micro_batch.unwrap_or(self.batch_size)
    }

    /// The WSD decay asked for, if one is, and its end.
    fn wsd(&self) -> Result<Option<Wsd>, String> {
        let o = &self.optim;
        if o.schedule != Some(Schedule::Wsd) {
            let set = [("cooldown_tokens", o.cooldown_tokens.is_some()), ("decay_shape", o.decay_shape.is_some())];
            return match set.into_iter().find(|(_, is_set)| *is_set) {
                Some((key, _)) => {
                    Err(format!("optim.{key} is a setting of `schedule: wsd`, and this run's schedule is a cosine"))
                }
                None => Ok(None),
            };
        }
        if o.decay_tokens.is_some() {
            return Err("optim.decay_tokens sets where a cosine ends; a wsd decay ends at max_tokens and lasts optim.cooldown_tokens".into());
        }
        let cooldown =
            o.cooldown_tokens.ok_or("`schedule: wsd` needs optim.cooldown_tokens, the length of its final decay")?;
        let shape = o.decay_shape.unwrap_or(DecayShape::Linear);
        Ok(Some(Wsd { decay_start_tokens: self.max_tokens as f64 - cooldown as f64, shape }))
    }

    /// The token counts at which the run keeps its state (`keep_checkpoints`).
    fn kept_checkpoints(&self) -> Vec<u64> {
        self.keep_checkpoints.clone().unwrap_or_default()
    }
}

/// The `train` node kind.
pub struct Train {
    schema: Schema,
}

impl Train {
    /// Creates the kind with its schema.
    pub fn new() -> Self {
        Train { schema: TrainParams::schema() }
    }
}

impl Default for Train {
    fn default() -> Self {
        Self::new()
    }
}

/// The compiled step a run uses, from its helper's record, and why; `None`
/// without a helper (`compile: off`, or `auto` on the CPU).
fn compiled_use(params: &TrainParams, ctx: &NodeCtx<'_>) -> Result<CompiledUse, String> {
    let Ok(dir) = ctx.input_with(COMPILE_RECORD) else {
        let why = match params.compile {
            CompileMode::Off => "compile: off",
            _ if params.device == "cpu" => "compile: auto keeps CPU training eager",
            _ => "no compiled step: the vocabulary is known only once the shards exist (no upstream `vocab_size`)",
        };
        return Ok(CompiledUse { package: None, reason: format!("eager ({why})") });
    };
    let (used, reason) = CompileRecord::read(&dir)?.use_for(params.compile);
    Ok(CompiledUse { package: used.then(|| dir.join(crate::train::compile::PACKAGE_FILE)), reason })
}

/// Builds the worker's job from validated params.
fn job(
    params: &TrainParams,
    shape: ModelShape,
    ctx: &NodeCtx<'_>,
    shards: std::path::PathBuf,
) -> Result<TrainJob, String> {
    let branch_from = match params.at_tokens {
        Some(tokens) => {
            let file = kept_checkpoint(tokens);
            let dir = ctx.input_with(&file).map_err(|e| format!("at_tokens {tokens}: {e}"))?;
            Some(BranchFrom { checkpoint: dir.join(file), tokens })
        }
        None => None,
    };
    let o = &params.optim;
    let optim = OptimSpec {
        lr: o.lr,
        beta1: o.beta1,
        beta2: o.beta2,
        eps: o.eps,
        weight_decay: o.weight_decay,
        clip: o.clip,
        warmup_tokens: o.warmup_tokens as f64,
        decay_tokens: o.decay_tokens.unwrap_or(params.max_tokens) as f64,
        final_lr_fraction: o.final_lr_fraction,
        wsd: params.wsd()?,
    };
    let job = TrainJob {
        model: shape,
        optim,
        batch_size: params.batch_size,
        micro_batch: params.micro_batch(),
        max_tokens: params.max_tokens,
        eval_points: params.eval_points,
        eval_tokens: params.eval_tokens,
        seed: params.seed,
        sampling: params.sampling.unwrap_or_default(),
        device: resolve_device(&params.device, ctx.gpus())?,
        precision: params.precision,
        checkpoint_seconds: params.checkpoint_seconds,
        checkpoint_steps: params.checkpoint_steps,
        threads: params.threads,
        peak_flops: params.peak_tflops.map(|t| t * 1e12),
        shards,
        out: ctx.out_dir().to_path_buf(),
        work: ctx.work_dir().to_path_buf(),
        keep_checkpoints: params.kept_checkpoints(),
        branch_from,
        compiled: Some(compiled_use(params, ctx)?),
        devices: params.devices,
        collective_timeout_seconds: params.collective_timeout,
    };
    job.check()?;
    Ok(job)
}

/// The MLflow run to track, when `tracking.mlflow` is set. Its params are
/// what the key hashes (flattened: `optim.lr`) and the model shape they
/// resolve to; metadata that may change between attempts of the same key
/// (`device`, `threads`, …) goes into tags, since MLflow params cannot change.
fn tracking(schema: &Schema, settings: &TrainParams, ctx: &NodeCtx<'_>, job: &TrainJob) -> Option<RunSpec> {
    let TrackingParams { mlflow: server, experiment } = settings.tracking.as_ref()?;
    let experiment = experiment.as_deref().unwrap_or(ctx.experiment());
    let params = ctx.params();
    let mut flat = schema.hashed_part(params).leaves();
    let m = &job.model;
    let head = if m.head == Head::Tied { "tied" } else { "untied" };
    for (key, value) in [
        ("model.n_layer", m.n_layer.to_string()),
        ("model.n_head", m.n_head.to_string()),
        ("model.d_model", m.d_model.to_string()),
        ("model.head", head.to_string()),
        ("model.vocab_size", m.vocab_size.to_string()),
        ("context", m.context.to_string()),
        ("variant", m.variant.name().to_string()),
    ] {
        flat.entry(key.to_string()).or_insert(value);
    }
    let mut tags = vec![
        ("scalemake.node".to_string(), ctx.id().0.clone()),
        ("scalemake.experiment".to_string(), ctx.experiment().to_string()),
    ];
    for field in schema.fields.iter().filter(|f| !f.hashed && f.name != "tracking") {
        if let Some(value) = params.as_map().and_then(|m| m.get(field.name)) {
            tags.push((format!("scalemake.{}", field.name), value.to_string()));
        }
    }
    Some(RunSpec {
        server: server.to_string(),
        experiment: experiment.to_string(),
        run_name: ctx.id().0.clone(),
        key: ctx.key().hex(),
        params: flat.into_iter().collect(),
        tags,
    })
}

/// What the node learns from the worker's events.
#[derive(Default)]
struct Outcome {
    device: String,
    params: ParamCounts,
    total_steps: u64,
    val_loss: Option<f64>,
    test_loss: Option<f64>,
    tokens: u64,
    tokens_per_second: f64,
    done: bool,
    /// The step the worker checkpointed at before stopping, as asked.
    suspended: Option<u64>,
    failure: Option<String>,
}

impl NodeKind for Train {
    fn name(&self) -> &'static str {
        "train"
    }

    /// 2: the artifact's `config.json` is a typed `TrainRecord` (optimiser,
    /// final validation and test losses), and compute is counted with
    /// FastFood diagonals, not every structured parameter, as free.
    /// 3: the artifact holds TensorBoard event files (`tensorboard/`).
    fn version(&self) -> u32 {
        3
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn resumes(&self) -> bool {
        true
    }

    /// One GPU per device for `cuda`, as many if there are for `auto`
    /// (feeding each takes a CPU slot); on `cpu`, as many slots as libtorch
    /// will use threads (all ranks together), so two CPU trainings do not
    /// fight over the same cores.
    fn resources_default(&self, params: &Value) -> Resources {
        let Ok(p) = TrainParams::read(params) else { return Resources::default() };
        let ranks = p.devices as u32;
        match p.device.as_str() {
            "cpu" => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
                let threads = if p.threads > 0 { p.threads as u32 * ranks } else { cores.max(ranks) };
                Resources { cpu: threads, tasks: ranks, ..Resources::default() }
            }
            "auto" => Resources { cpu: ranks, gpu: ranks, gpu_optional: true, tasks: ranks },
            _ => Resources { cpu: ranks, gpu: ranks, gpu_optional: false, tasks: ranks },
        }
    }

    /// Counts and FLOPs of the declared model over `max_tokens` (the
    /// vocabulary from an upstream `vocab_size`, else the paper's), plus
    /// the validation passes (forward only: a third of a training token).
    fn estimate(&self, params: &Value, upstream: &dyn Fn(&str) -> Option<Value>) -> Option<WorkEstimate> {
        let p = TrainParams::read(params).ok()?;
        let declared = upstream("vocab_size").as_ref().and_then(Value::as_i64);
        let shape = p.model_shape(declared.unwrap_or(PAPER_VOCAB)).ok()?;
        let counts = shape.param_counts();
        // A branch trains only from its source's checkpoint on.
        let tokens = p.max_tokens as f64 - p.at_tokens.unwrap_or(0) as f64;
        let eval_tokens = p.eval_points as f64 * p.eval_tokens as f64;
        let per_token = shape.flops_per_token(&counts);
        Some(WorkEstimate {
            params: counts,
            tokens,
            flops: per_token * (tokens + eval_tokens / 3.0),
            bf16: p.precision == Precision::Bf16,
            note: declared.is_none().then(|| format!("vocabulary {PAPER_VOCAB} assumed (no upstream vocab_size)")),
            devices: p.devices as u32,
        })
    }

    /// The compiled step of this node's shape, unless `compile: off` (or
    /// `auto` on the CPU, which trains eager) or the vocabulary is unknown
    /// before the shards exist (no upstream `vocab_size`).
    fn helper(&self, params: &Value, upstream: &dyn Fn(&str) -> Option<Value>) -> Option<Helper> {
        let p = TrainParams::read(params).ok()?;
        if p.compile == CompileMode::Off || (p.compile == CompileMode::Auto && p.device == "cpu") {
            return None;
        }
        let vocab = upstream("vocab_size").as_ref().and_then(Value::as_i64)?;
        let shape = p.model_shape(vocab).ok()?;
        let helper = Compile::helper_params(&shape, p.precision, p.micro_batch() as i64, p.compile, &p.device);
        Some(Compile::helper(&helper))
    }

    /// N does not depend on the vocabulary (embeddings are not counted),
    /// so the paper's is as good as the tokenizer's here.
    fn compute_basis(&self, params: &Value) -> Option<ComputeBasis> {
        let p = TrainParams::read(params).ok()?;
        let shape = p.model_shape(PAPER_VOCAB).ok()?;
        Some(ComputeBasis {
            trainable: shape.param_counts().trainable,
            tokens_per_step: p.batch_size * shape.context.max(0) as u64,
        })
    }

    /// A branch takes every setting of its source but the checkpoints it
    /// keeps (its own `keep_checkpoints`, if any, are its own).
    fn branch_base(&self, source: &Value) -> Result<Value, String> {
        let mut base = source.clone();
        if let Value::Map(map) = &mut base {
            map.remove("keep_checkpoints");
            map.remove("at_tokens");
        }
        Ok(base)
    }

    fn check_branch(&self, params: &Value, source: &Value) -> Result<(), Refusal> {
        let refuse =
            |param: &str, message: String, hint: &str| Err(Refusal { param: param.into(), message, hint: hint.into() });
        let (Ok(mine), Ok(theirs)) = (TrainParams::read(params), TrainParams::read(source)) else {
            return Ok(()); // unreadable settings fail when the node runs, with the reason
        };
        let Some(at) = mine.at_tokens else {
            return refuse(
                "from",
                "a branch starts from one of its source's kept checkpoints: say which with `at_tokens:`".into(),
                "at_tokens: one of the source's keep_checkpoints",
            );
        };
        for path in CONTINUED {
            let (mine, theirs) = (params.get_path(path), source.get_path(path));
            if mine != theirs {
                let show = |v: Option<&Value>| v.map_or("unset".to_string(), |v| format!("`{v}`"));
                return refuse(
                    path,
                    format!(
                        "a branch continues its source's run: `{path}` must stay {}, not {}",
                        show(theirs),
                        show(mine)
                    ),
                    "remove it from the branch: it inherits the source's",
                );
            }
        }
        let kept = theirs.kept_checkpoints();
        if !kept.contains(&at) {
            let list = if kept.is_empty() { "none".to_string() } else { format!("{kept:?}") };
            return refuse(
                "at_tokens",
                format!("the source keeps no checkpoint at {at} tokens (it keeps {list})"),
                "branch from a kept one, or add this one to the source's `keep_checkpoints` (which retrains the source once)",
            );
        }
        // Where each schedule's decay starts, as the worker will run it.
        let decay_start = |p: &TrainParams| p.wsd().ok().flatten().map(|w| w.decay_start_tokens);
        let Some(source_decay) = decay_start(&theirs) else {
            return refuse(
                "from",
                "only a warmup–stable–decay run has a stable phase to branch from; the source's schedule is a cosine"
                    .into(),
                "give the source `optim: { schedule: wsd, cooldown_tokens: … }`",
            );
        };
        if source_decay < at as f64 {
            return refuse(
                "at_tokens",
                format!(
                    "at {at} tokens the source is already decaying (its decay starts at {source_decay}): a branch starts from the stable rate"
                ),
                "branch from a checkpoint before the source's decay",
            );
        }
        match decay_start(&mine) {
            Some(own_decay) if own_decay < at as f64 => refuse(
                "optim.cooldown_tokens",
                format!("the branch's decay would start at {own_decay} tokens, before its checkpoint at {at}"),
                "make max_tokens − optim.cooldown_tokens at least at_tokens",
            ),
            _ => Ok(()),
        }
    }

    fn run(&self, ctx: &mut NodeCtx<'_>) -> Result<(), NodeError> {
        let shards = ctx.input_with(META_FILE)?;
        let meta_path = shards.join(META_FILE);
        let meta: ShardsMeta = std::fs::read(&meta_path).map_err(|e| NodeError::io(&meta_path, e)).and_then(|b| {
            serde_json::from_slice(&b).map_err(|e| NodeError::Failed(format!("{}: {e}", meta_path.display())))
        })?;
        let vocab = i64::from(meta.vocab_size);
        let params: TrainParams = ctx.settings()?;
        let shape = params.model_shape(vocab).map_err(NodeError::Failed)?;
        let job = job(&params, shape, ctx, shards).map_err(NodeError::Failed)?;
        let job_path = ctx.work_dir().join("job.json");
        let text = serde_json::to_vec_pretty(&job).map_err(|e| NodeError::Failed(e.to_string()))?;
        std::fs::write(&job_path, text).map_err(|e| NodeError::io(&job_path, e))?;

        // Tracking starts before the worker so that finding the run overlaps its start-up.
        // Dropped on an early return, it ends the MLflow run as FAILED.
        let tracker = match tracking(&self.schema, &params, ctx, &job) {
            Some(spec) => {
                let log = ctx.log().try_clone().map_err(|e| NodeError::Failed(format!("cannot share the log: {e}")))?;
                Some(Tracker::start(spec, log))
            }
            None => None,
        };
        let mut child = spawn_ranks(ctx, ("train", &job_path), &params.device, params.devices as u32, Stdio::piped())?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut outcome = Outcome::default();
        let mut last_val = String::new();
        let mut asked_to_stop = false;
        // Live scalars for `tensorboard --logdir cache/work` while it trains.
        let mut live = Scalars::open(&ctx.work_dir().join(TENSORBOARD_DIR));
        loop {
            if ctx.is_suspend_requested() && !asked_to_stop {
                // The worker checkpoints after its current step and exits; keep reading its events until then.
                // SAFETY: kill with the pid of our own child, which we have not yet waited for.
                unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
                ctx.log_line("scalemake: asked to stop (a Slurm signal); the worker checkpoints and stops");
                asked_to_stop = true;
            }
            if ctx.is_cancelled() && !asked_to_stop {
                let _ = child.kill();
                let _ = child.wait();
                if let Some(tracker) = tracker {
                    tracker.end(Ending::Killed);
                }
                return Err(NodeError::Cancelled);
            }
            let line = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let Ok(event) = serde_json::from_str::<Event>(&line) else {
                ctx.log_line(&format!("worker: {line}"));
                continue;
            };
            match event {
                Event::Start { device, params, total_steps, resumed_from } => {
                    if let (Some(step), Some(from)) =
                        (job.branch_step().filter(|&s| s == resumed_from), &job.branch_from)
                    {
                        ctx.log_line(&format!(
                            "scalemake: cooldown branch: starting after step {step} from {}",
                            from.checkpoint.display()
                        ));
                    } else if resumed_from > 0 {
                        ctx.log_line(&format!("scalemake: resuming from the checkpoint after step {resumed_from}"));
                    } else {
                        ctx.log_line("scalemake: no checkpoint; training from step 0");
                    }
                    if let Some(tracker) = &tracker {
                        let counts = param_counts(&params).map(|(name, n)| (name.to_string(), n.to_string()));
                        tracker.log(counts.into(), vec![("scalemake.device_used".into(), device.clone())]);
                    }
                    (outcome.device, outcome.params, outcome.total_steps) = (device, params, total_steps);
                    ctx.progress(Progress::Position { done: resumed_from, total: total_steps });
                }
                Event::Step(row) => {
                    live.step(&row);
                    if let Some(tracker) = &tracker {
                        tracker.metrics(points(row.step, &step_scalars(&row)));
                    }
                    outcome.tokens = row.tokens;
                    ctx.progress(Progress::Position { done: row.step, total: outcome.total_steps });
                    let mfu = row.mfu.map(|m| format!(" · MFU {:.0}%", 100.0 * m)).unwrap_or_default();
                    ctx.progress(Progress::Message(format!(
                        "loss {:.3}{last_val} · {:.0} tok/s{mfu}",
                        row.loss, row.tokens_per_second
                    )));
                }
                Event::Eval(row) => {
                    live.eval(&row);
                    if let Some(tracker) = &tracker {
                        tracker.metrics(points(row.step, &eval_scalars(&row)));
                    }
                    outcome.val_loss = Some(row.val_loss);
                    last_val = format!(" · val {:.3}", row.val_loss);
                }
                Event::Checkpoint { step } => ctx.log_line(&format!("scalemake: checkpoint after step {step}")),
                Event::Done { val_loss, test_loss, tokens_per_second } => {
                    outcome.val_loss = Some(val_loss);
                    outcome.test_loss = test_loss;
                    outcome.tokens_per_second = tokens_per_second;
                    outcome.done = true;
                }
                Event::Suspended { step } => outcome.suspended = Some(step),
                Event::Failed { message } => outcome.failure = Some(message),
            }
        }
        let status = child.wait().map_err(|e| NodeError::Failed(format!("waiting for the worker: {e}")))?;
        if let (Some(step), true) = (outcome.suspended, status.success()) {
            if let Some(tracker) = tracker {
                tracker.end(Ending::Suspended);
            }
            return Err(NodeError::Suspended { step });
        }
        if !status.success() || !outcome.done {
            let why = outcome.failure.unwrap_or_else(|| format!("the worker ended ({status}) before finishing"));
            return Err(NodeError::Failed(format!("training failed: {why} (more in `scalemake log {}`)", ctx.id())));
        }
        let (steps, evals) = final_metrics(ctx.out_dir()).map_err(NodeError::Failed)?;
        write_tensorboard(ctx.out_dir(), &steps, &evals).map_err(NodeError::Failed)?;
        report(ctx, &job, &outcome);
        if let Some(tracker) = tracker {
            let metrics = steps
                .iter()
                .flat_map(|row| points(row.step, &step_scalars(row)))
                .chain(evals.iter().flat_map(|row| points(row.step, &eval_scalars(row))))
                .collect();
            tracker.end(Ending::Finished { artifact_dir: ctx.out_dir().to_path_buf(), metrics });
        }
        Ok(())
    }
}

/// Scalars for TensorBoard: training loss, learning rate, gradient norm,
/// throughput and validation loss, by optimiser step. A writer that cannot
/// be created (a full disk) only costs the live view, never the run.
struct Scalars(Option<EventWriter>);

impl Scalars {
    fn open(dir: &Path) -> Self {
        Scalars(EventWriter::create(dir, unix_time()).ok())
    }

    fn step(&mut self, row: &StepRow) {
        if let Some(w) = &mut self.0 {
            let now = unix_time();
            let ok = step_scalars(row).into_iter().all(|(tag, value)| w.scalar(tag, row.step, value, now).is_ok());
            if !ok || w.flush().is_err() {
                self.0 = None;
            }
        }
    }

    fn eval(&mut self, row: &EvalRow) {
        if let Some(w) = &mut self.0 {
            let now = unix_time();
            let ok = eval_scalars(row).into_iter().all(|(tag, value)| w.scalar(tag, row.step, value, now).is_ok());
            if !ok || w.flush().is_err() {
                self.0 = None;
            }
        }
    }
}

/// A step's scalars by name: the names TensorBoard and MLflow both show.
fn step_scalars(row: &StepRow) -> [(&'static str, f64); 4] {
    [
        ("train/loss", row.loss),
        ("train/lr", row.lr),
        ("train/grad_norm", row.grad_norm),
        ("train/tokens_per_second", row.tokens_per_second),
    ]
}

/// An evaluation's scalars by name.
fn eval_scalars(row: &EvalRow) -> [(&'static str, f64); 1] {
    [("val/loss", row.val_loss)]
}

/// Scalars at `step` as MLflow metric points, stamped now.
fn points(step: u64, scalars: &[(&'static str, f64)]) -> Vec<Metric> {
    let now = mlflow::now_ms();
    scalars.iter().map(|&(key, value)| Metric { key, value, step, timestamp_ms: now }).collect()
}

/// The parameter counts by the names the manifest records them under.
fn param_counts(p: &ParamCounts) -> [(&'static str, i64); 5] {
    [
        ("params_embedding", p.embedding),
        ("params_trainable", p.trainable),
        ("params_frozen", p.frozen),
        ("params_structured", p.structured),
        ("params_fastfood", p.fastfood),
    ]
}

fn unix_time() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The complete run's steps and evaluations, from the artifact's metrics
/// files (each step once, even after resumptions).
fn final_metrics(out: &Path) -> Result<(Vec<StepRow>, Vec<EvalRow>), String> {
    fn rows<T: serde::de::DeserializeOwned>(out: &Path, file: &str) -> Result<Vec<T>, String> {
        let path = out.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        text.lines().map(|line| serde_json::from_str(line).map_err(|e| format!("{file}: {e}"))).collect()
    }
    Ok((rows(out, STEPS_FILE)?, rows(out, EVAL_FILE)?))
}

/// The artifact's event file, written from the complete metrics.
fn write_tensorboard(out: &Path, steps: &[StepRow], evals: &[EvalRow]) -> Result<(), String> {
    let mut scalars = Scalars(Some(
        EventWriter::create(&out.join(TENSORBOARD_DIR), unix_time()).map_err(|e| format!("tensorboard: {e}"))?,
    ));
    steps.iter().for_each(|row| scalars.step(row));
    evals.iter().for_each(|row| scalars.eval(row));
    match scalars.0 {
        Some(_) => Ok(()),
        None => Err("tensorboard: could not write the event file".into()),
    }
}

/// Records the run's numbers in the manifest (`scalemake show`).
fn report(ctx: &mut NodeCtx<'_>, job: &TrainJob, outcome: &Outcome) {
    let p = outcome.params;
    let m = &job.model;
    let compute = Compute::at(&p, outcome.tokens as f64);
    if let Some(test) = outcome.test_loss {
        ctx.record_metric("test_loss", test);
    }
    for (name, count) in param_counts(&p) {
        ctx.record_metric(name, count as f64);
    }
    for (name, value) in [
        ("tokens", outcome.tokens as f64),
        ("steps", outcome.total_steps as f64),
        ("val_loss", outcome.val_loss.unwrap_or(f64::NAN)),
        ("compute_trainable", compute.trainable),
        ("compute_frozen_2_3", compute.frozen_2_3),
        ("compute_frozen_full", compute.frozen_full),
        ("compute_fastfood_free", compute.fastfood_free),
        ("tokens_per_second", outcome.tokens_per_second),
    ] {
        ctx.record_metric(name, value);
    }
    let head = if m.head == Head::Tied { "tied" } else { "untied" };
    let layers = match m.frozen_layers() {
        0 => format!("{} layers", m.n_layer),
        frozen => format!("{} trainable layers + {frozen} frozen {}·d MLPs", m.n_layer, crate::train::FROZEN_MLP_RATIO),
    };
    let variant = serde_json::to_value(m.variant).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    ctx.add_summary(format!(
        "model: {variant}, {layers}, d_model {}, {} heads, context {}, {head} head, vocabulary {}",
        m.d_model, m.n_head, m.context, m.vocab_size
    ));
    ctx.add_summary(format!(
        "parameters: N = {} trainable non-embedding, {} frozen, {} structured, {} embedding",
        thousands(p.trainable),
        thousands(p.frozen),
        thousands(p.structured),
        thousands(p.embedding)
    ));
    ctx.add_summary(format!(
        "compute: C = 6·N·D = {:.3e} FLOP (frozen at 2/3 cost: {:.3e}; frozen at full cost: {:.3e}; FastFood diagonals free: {:.3e})",
        compute.trainable, compute.frozen_2_3, compute.frozen_full, compute.fastfood_free
    ));
    let val = match (outcome.val_loss, outcome.test_loss) {
        (Some(v), Some(t)) if v.is_finite() => format!("final val loss {v:.4}, test loss {t:.4}"),
        (Some(v), None) if v.is_finite() => format!("final val loss {v:.4} (no test split)"),
        _ => "diverged: the loss is not finite".to_string(),
    };
    ctx.add_summary(format!(
        "trained {} tokens in {} steps of {}×{}; {val}",
        thousands(outcome.tokens as i64),
        outcome.total_steps,
        job.batch_size,
        m.context
    ));
    if let Some(from) = &job.branch_from {
        ctx.add_summary(format!(
            "cooldown branch: the source's state after {} tokens, then {} tokens of its own",
            thousands(from.tokens as i64),
            thousands(outcome.tokens.saturating_sub(from.tokens) as i64)
        ));
    }
    ctx.add_summary(format!("throughput {:.0} tokens/s on {}", outcome.tokens_per_second, outcome.device));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A renamed setting would leave a branch check comparing two absent
    /// values: every continued path names a field of the schema.
    #[test]
    fn every_continued_setting_is_in_the_schema() {
        let schema = TrainParams::schema();
        for path in CONTINUED {
            let mut fields = &schema;
            let mut parts = path.split('.').peekable();
            while let Some(part) = parts.next() {
                let field = fields.field(part).unwrap_or_else(|| panic!("`{path}` is not a train setting"));
                if parts.peek().is_some() {
                    let FieldType::Struct(inner) = &field.ty else { panic!("`{path}` goes through a non-mapping") };
                    fields = inner;
                }
            }
        }
    }
}
