//! The training loop of a `train` node: data → steps → evaluations →
//! checkpoints → artifact.
//!
//! Resuming is exact: a checkpoint holds the flat parameters and Adam state,
//! and everything random is a function of the seed and the step (dropout is
//! reseeded every step; the data sampler skips the batches already drawn),
//! so on CPU a run killed and resumed writes the same loss curve, bit for
//! bit, as one that never stopped. Metrics are appended to files in the work
//! directory; a checkpoint records their lengths, and a resumed run cuts them
//! back to those lengths before appending again.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use scalemake::data::loader::{prefetch, Batches, Order, TokenStream};
use scalemake::train::job::{kept_checkpoint, BranchFrom, EvalRow, Event, Precision, Sampling, StepRow, TrainJob};
use scalemake::train::record::{TrainRecord, RECORD_FILE};
use scalemake::train::{eval_steps, peak_flops, Compute, ParamCounts};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use super::compiled::CompiledStep;
use super::Trainer;
use crate::distributed::{Backend, Group, Rendezvous};
use crate::model::gpt::{param_counts, Gpt};

/// Steps between reading losses back from the device: each read is a host
/// sync, so they are batched (evaluations, checkpoints and the end also read).
const SYNC_EVERY: usize = 10;

/// Where a checkpoint stands; the tensors live in the file it names.
#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    /// Steps done.
    step: u64,
    /// Tokens seen.
    tokens: u64,
    /// The safetensors file with parameters and optimiser state.
    tensors: String,
    /// Lengths of the metric files at the checkpoint.
    steps_bytes: u64,
    eval_bytes: u64,
    /// Name and shape of each parameter in the flat buffers: a checkpoint
    /// from a different model layout is refused, not loaded permuted.
    layout: Vec<(String, Vec<i64>)>,
}

/// Appends metric rows as JSON lines in the work directory.
struct MetricLog {
    steps: File,
    evals: File,
    dir: PathBuf,
}

impl MetricLog {
    /// Opens the logs, cut back to the lengths a checkpoint recorded (or emptied).
    fn open(dir: &Path, lengths: (u64, u64)) -> Result<Self, String> {
        let open = |name: &str, len: u64| -> Result<File, String> {
            let path = dir.join(name);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            file.set_len(len).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(file)
        };
        Ok(MetricLog {
            steps: open("steps.jsonl", lengths.0)?,
            evals: open("eval.jsonl", lengths.1)?,
            dir: dir.to_path_buf(),
        })
    }

    fn append<T: Serialize>(file: &mut File, row: &T) -> Result<(), String> {
        let line = serde_json::to_string(row).map_err(|e| e.to_string())?;
        writeln!(file, "{line}").map_err(|e| format!("metrics: {e}"))
    }

    /// Current lengths, on disk (what a checkpoint may promise after a crash).
    fn durable_lengths(&mut self) -> Result<(u64, u64), String> {
        let len = |f: &mut File| {
            f.flush()
                .and_then(|_| f.sync_data())
                .and_then(|_| f.metadata())
                .map(|m| m.len())
                .map_err(|e| format!("metrics: {e}"))
        };
        Ok((len(&mut self.steps)?, len(&mut self.evals)?))
    }
}

/// The dropout seed of a step on a rank: resuming at step s replays the
/// same masks, and ranks draw different ones for their different rows.
fn step_seed(seed: u64, step: u64, rank: usize) -> i64 {
    let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(step);
    ((mixed ^ (rank as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)) >> 1) as i64
}

/// This rank's rows of a step's global batch (its `micro` batches of
/// `rows` windows of `width` tokens each, in order): an equal, contiguous
/// share, cut where micro-batches end, so one rank holds whole
/// micro-batches whenever their count divides by the ranks.
fn rank_rows(micro: &[Vec<u32>], rows: usize, width: usize, rank: usize, world: usize) -> Vec<(&[u32], usize)> {
    let total = micro.len() * rows;
    let (lo, hi) = (rank * total / world, (rank + 1) * total / world);
    micro
        .iter()
        .enumerate()
        .filter_map(|(i, batch)| {
            let (start, end) = (lo.max(i * rows), hi.min((i + 1) * rows));
            (start < end).then(|| (&batch[(start - i * rows) * width..(end - i * rows) * width], end - start))
        })
        .collect()
}

/// One (B, T+1) batch of tokens → (inputs, targets) on `device`. On a
/// GPU the copy goes through pinned memory without blocking, so the host
/// never waits for the device's queue to drain.
fn to_tensors(tokens: &[u32], rows: i64, device: Device) -> (Tensor, Tensor) {
    let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
    let host = Tensor::from_slice(&ids).view([rows, -1]);
    let t = match device {
        Device::Cpu => host,
        // `_pin_memory`, not `pin_memory`: torch 2.11's public op warns on
        // every call that its device argument is deprecated, and tch always
        // passes one. A tensor just made from a slice is never pinned yet,
        // and skipping that check is all `pin_memory` adds.
        _ => host.internal_pin_memory(device).to_device_(device, Kind::Int64, true, false),
    };
    let width = t.size()[1];
    (t.narrow(1, 0, width - 1), t.narrow(1, 1, width - 1))
}

/// A fixed held-out subset: the first `eval_tokens` tokens of `split`
/// (`val` or `test`), as consecutive windows, in micro-batches.
fn held_out_set(job: &TrainJob, split: &str, device: Device) -> Result<Vec<(Tensor, Tensor)>, String> {
    let stream = Arc::new(TokenStream::open_split(&job.shards, split).map_err(|e| e.to_string())?);
    let context = job.model.context as usize;
    let batches = Batches::new(stream, job.micro_batch as usize, context, Order::Sequential).map_err(|e| {
        format!("{split} split: {e}; give the corpus a larger `split.{split}` or use a shorter context")
    })?;
    let rows_wanted = (job.eval_tokens as usize).div_ceil(context).max(1);
    let mut rows = 0;
    let mut set = Vec::new();
    for batch in batches {
        let n = (batch.len() / (context + 1)).min(rows_wanted - rows);
        set.push(to_tensors(&batch[..n * (context + 1)], n as i64, device));
        rows += n;
        if rows == rows_wanted {
            break;
        }
    }
    Ok(set)
}

/// Mean loss over a held-out set, dropout off.
fn evaluate(model: &Gpt, set: &[(Tensor, Tensor)]) -> f64 {
    tch::no_grad(|| {
        let (mut sum, mut count) = (0.0, 0i64);
        for (x, y) in set {
            sum += model.loss(x, y, false).double_value(&[]) * x.numel() as f64;
            count += x.numel() as i64;
        }
        sum / count.max(1) as f64
    })
}

/// Reads the latest checkpoint in `work`, if any, into `trainer`.
fn resume(work: &Path, trainer: &mut Trainer) -> Result<Option<CheckpointMeta>, String> {
    let meta_path = work.join("checkpoint.json");
    let text = match fs::read_to_string(&meta_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", meta_path.display())),
    };
    let meta: CheckpointMeta = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", meta_path.display()))?;
    if meta.layout != trainer.layout() {
        return Err(format!(
            "{} was written for a different parameter layout; `scalemake clean` the node to start over",
            meta_path.display()
        ));
    }
    let tensors = Tensor::read_safetensors(work.join(&meta.tensors)).map_err(|e| e.to_string())?;
    trainer.restore(&tensors, meta.step, meta.tokens)?;
    Ok(Some(meta))
}

/// Starts a cooldown branch from its source's kept checkpoint: weights,
/// Adam moments and the step (which fixes the data position and dropout
/// masks from there on, as in a resume), which is `step`.
fn branch(from: &BranchFrom, step: u64, trainer: &mut Trainer) -> Result<(), String> {
    let tensors =
        Tensor::read_safetensors(&from.checkpoint).map_err(|e| format!("{}: {e}", from.checkpoint.display()))?;
    trainer.restore(&tensors, step, from.tokens).map_err(|e| format!("{}: {e}", from.checkpoint.display()))
}

/// Keeps the state after `tokens` tokens for cooldown branches, in the
/// work directory (it survives a kill) until the artifact takes it. Written
/// under a temporary name and renamed: a file there is always whole.
fn keep_checkpoint(work: &Path, trainer: &Trainer, tokens: u64) -> Result<(), String> {
    let path = work.join(kept_checkpoint(tokens));
    let dir = path.parent().expect("kept checkpoints live in a directory");
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    write_state(trainer, &path.with_extension("tmp"), &path)
}

/// The trainer's state (weights, Adam moments) as safetensors at `dest`:
/// written and synced under `tmp`, then renamed, so `dest` is always whole.
fn write_state(trainer: &Trainer, tmp: &Path, dest: &Path) -> Result<(), String> {
    let cpu: Vec<(&str, Tensor)> = trainer.state().into_iter().map(|(n, t)| (n, t.to_device(Device::Cpu))).collect();
    Tensor::write_safetensors(&cpu, tmp).map_err(|e| e.to_string())?;
    File::open(tmp).and_then(|f| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    fs::rename(tmp, dest).map_err(|e| format!("{}: {e}", tmp.display()))
}

/// Writes a checkpoint: the tensors under a new name, then the metadata
/// naming them by atomic rename, then the old tensors go.
fn checkpoint(work: &Path, trainer: &Trainer, metrics: &mut MetricLog) -> Result<(), String> {
    let step = trainer.steps();
    let (steps_bytes, eval_bytes) = metrics.durable_lengths()?;
    let name = format!("checkpoint-{step:09}.safetensors");
    write_state(trainer, &work.join(format!("{name}.tmp")), &work.join(&name))?;
    let meta = CheckpointMeta {
        step,
        tokens: trainer.tokens,
        tensors: name.clone(),
        steps_bytes,
        eval_bytes,
        layout: trainer.layout().to_vec(),
    };
    let meta_tmp = work.join("checkpoint.json.tmp");
    fs::write(&meta_tmp, serde_json::to_vec_pretty(&meta).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", meta_tmp.display()))?;
    File::open(&meta_tmp).and_then(|f| f.sync_all()).map_err(|e| format!("{}: {e}", meta_tmp.display()))?;
    fs::rename(&meta_tmp, work.join("checkpoint.json")).map_err(|e| format!("{}: {e}", meta_tmp.display()))?;
    for entry in fs::read_dir(work).map_err(|e| e.to_string())?.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with("checkpoint-") && file != name {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// A step whose loss and gradient norm are still on the device.
struct Pending {
    step: u64,
    tokens: u64,
    lr: f64,
    loss: Tensor,
    grad_norm: Tensor,
}

/// Turns pending steps into rows (one host sync for all of them).
struct RowMaker {
    counts: ParamCounts,
    flops_per_token: f64,
    peak: Option<f64>,
    window_start: Instant,
    window_tokens: u64,
}

impl RowMaker {
    fn rows(&mut self, pending: &mut Vec<Pending>) -> Result<Vec<StepRow>, String> {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let read = |values: Vec<Tensor>| -> Result<Vec<f64>, String> {
            Vec::try_from(Tensor::stack(&values, 0).to_kind(Kind::Double).to_device(Device::Cpu))
                .map_err(|e| format!("reading losses back: {e}"))
        };
        let losses = read(pending.iter().map(|p| p.loss.shallow_clone()).collect())?;
        let norms = read(pending.iter().map(|p| p.grad_norm.shallow_clone()).collect())?;
        let seconds = self.window_start.elapsed().as_secs_f64().max(1e-9);
        let tokens_per_second = self.window_tokens as f64 / seconds;
        let mfu = self.peak.map(|peak| tokens_per_second * self.flops_per_token / peak);
        self.window_start = Instant::now();
        self.window_tokens = 0;
        Ok(pending
            .drain(..)
            .zip(losses.into_iter().zip(norms))
            .map(|(p, (loss, grad_norm))| StepRow {
                step: p.step,
                tokens: p.tokens,
                lr: p.lr,
                loss,
                grad_norm,
                compute: Compute::at(&self.counts, p.tokens as f64),
                tokens_per_second,
                mfu,
            })
            .collect())
    }
}

/// What every rank must decide alike at a sync point: sums this rank's
/// part of each pending loss over the ranks (in place: the rows then carry
/// the global losses), and whether any rank was asked to stop or rank 0's
/// checkpoint clock ran out. One all-reduce of a few floats.
fn agree(group: &Group, pending: &mut [Pending], stop: bool, checkpoint_due: bool) -> Result<(bool, bool), String> {
    let device = pending.first().map_or(Device::Cpu, |p| p.loss.device());
    let flags = Tensor::from_slice(&[f32::from(u8::from(stop)), f32::from(u8::from(checkpoint_due))]).to_device(device);
    let mut parts: Vec<Tensor> = pending.iter().map(|p| p.loss.to_kind(Kind::Float).reshape([1])).collect();
    parts.push(flags);
    let all = Tensor::cat(&parts, 0);
    group.all_reduce_sum(&all)?;
    for (i, p) in pending.iter_mut().enumerate() {
        p.loss = all.get(i as i64);
    }
    let n = pending.len() as i64;
    let flags =
        Vec::<f32>::try_from(all.narrow(0, n, 2).to_device(Device::Cpu)).map_err(|e: tch::TchError| e.to_string())?;
    Ok((flags[0] > 0.0, flags[1] > 0.0))
}

/// A step row for the node's log.
fn step_line(row: &StepRow, total: u64) -> String {
    let mfu = row.mfu.map(|m| format!(", MFU {:.1}%", 100.0 * m)).unwrap_or_default();
    format!(
        "step {}/{total}: {} tokens, loss {:.4}, lr {:.3e}, grad norm {:.3}, {:.0} tokens/s{mfu}",
        row.step, row.tokens, row.loss, row.lr, row.grad_norm, row.tokens_per_second
    )
}

/// Set by SIGUSR1 or SIGTERM ([`stop_on_signals`]): checkpoint after the
/// current step and stop, so a preempted or time-limited job resumes there.
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Makes SIGUSR1 (Slurm's warning before a time limit, `--signal`) and
/// SIGTERM (preemption, `scontrol requeue`) ask the loop to checkpoint and
/// stop instead of killing the worker mid-step.
pub fn stop_on_signals() -> Result<(), String> {
    for signal in [signal_hook::consts::SIGUSR1, signal_hook::consts::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { signal_hook::low_level::register(signal, || STOP_REQUESTED.store(true, Ordering::SeqCst)) }
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    Ok(())
}

/// Trains the model `job` describes, reporting through `emit`, and writes
/// the artifact into `job.out` — or, asked to stop, checkpoints and emits
/// [`Event::Suspended`] instead.
///
/// As one rank of a data-parallel run (`rank`), it trains on its share of
/// every batch and exchanges gradients with the others; rank 0 alone
/// evaluates, reports, checkpoints and writes the artifact, and decisions
/// that must be the same everywhere (stop, checkpoint) are agreed at the
/// sync points, where the losses are summed.
pub fn run(job: &TrainJob, rank: Option<&Rendezvous>, emit: &mut dyn FnMut(Event)) -> Result<(), String> {
    job.check()?;
    let (me, world) = rank.map_or((0, 1), |r| (r.rank, r.world));
    let root = me == 0;
    let threads = match rank {
        _ if job.threads > 0 => job.threads as usize,
        Some(r) => rank_threads(r),
        None => 0,
    };
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
    let (device, device_name) = rank_device(&job.device, rank)?;
    let bf16 = job.precision == Precision::Bf16;
    tch::manual_seed(job.seed as i64);
    let vs = nn::VarStore::new(device);
    let model = Gpt::new(&vs.root(), &job.model, if bf16 { Kind::BFloat16 } else { Kind::Float });
    let counts = param_counts(&vs, &job.model);
    let mut trainer = Trainer::new(&vs, &job.optim);
    let accum = job.batch_size / job.micro_batch;
    // A compiled step has the shape of a whole micro-batch.
    let whole_micro_batches = accum.is_multiple_of(world as u64);
    let step_used = use_compiled_step(job, &vs, &mut trainer, whole_micro_batches);

    fs::create_dir_all(&job.work).map_err(|e| format!("{}: {e}", job.work.display()))?;
    let resumed = resume(&job.work, &mut trainer)?;
    // Where a branch starts; 0 for a run of its own.
    let first = job.branch_step().unwrap_or(0);
    let start = match (&resumed, &job.branch_from) {
        (Some(meta), _) => meta.step,
        (None, Some(from)) => branch(from, first, &mut trainer).map(|()| first)?,
        (None, None) => 0,
    };
    if let Some(at) = rank {
        let backend = if device.is_cuda() { Backend::Nccl } else { Backend::Gloo };
        let timeout = std::time::Duration::from_secs_f64(job.collective_timeout_seconds.max(1.0));
        trainer.distribute(Group::join(at, backend, timeout)?)?;
    }
    let mut metrics = if root {
        Some(MetricLog::open(&job.work, resumed.as_ref().map_or((0, 0), |m| (m.steps_bytes, m.eval_bytes)))?)
    } else {
        None
    };

    let val_set = if root { held_out_set(job, "val", device)? } else { Vec::new() };
    let train = Arc::new(TokenStream::open_split(&job.shards, "train").map_err(|e| e.to_string())?);
    let (micro_rows, width) = (job.micro_batch as usize, job.model.context as usize + 1);
    let order = match job.sampling {
        Sampling::Random => Order::Random { seed: job.seed },
        Sampling::Epochs => Order::Epochs { seed: job.seed },
    };
    let mut batches = Batches::new(train, micro_rows, width - 1, order).map_err(|e| format!("training split: {e}"))?;
    batches.skip_batches(start * accum);
    let incoming = prefetch(batches, 2 * accum as usize);

    let total = job.total_steps();
    // A branch evaluates its own part, log-spaced from where it starts:
    // the source's artifact already holds the curve before that.
    let evals: BTreeSet<u64> = eval_steps(total - first, job.eval_points).into_iter().map(|s| s + first).collect();
    let keep: BTreeSet<u64> = job.keep_checkpoints.iter().copied().collect();
    let ranks = if world > 1 { format!(", {world} ranks") } else { String::new() };
    if root {
        emit(Event::Start { device: device_name.clone(), params: counts, total_steps: total, resumed_from: start });
        eprintln!(
            "training on {device_name}{ranks}: {} trainable non-embedding parameters, {total} steps of {} tokens{}",
            counts.trainable,
            job.tokens_per_step(),
            if start > 0 { format!(", resuming after step {start}") } else { String::new() }
        );
        eprintln!("training step: {step_used}");
    } else {
        eprintln!("rank {me} of {world} on {device_name}: ready");
    }

    let peak = job.peak_flops.or_else(|| peak_flops(&device_name, bf16)).map(|p| p * world as f64);
    let mut rows = RowMaker {
        counts,
        flops_per_token: job.model.flops_per_token(&counts),
        peak,
        window_start: Instant::now(),
        window_tokens: 0,
    };
    let (run_start, mut trained_tokens) = (Instant::now(), 0u64);
    let mut last_checkpoint = Instant::now();
    let mut pending: Vec<Pending> = Vec::new();
    let mut val_loss = f64::NAN;
    for step in start + 1..=total {
        tch::manual_seed(step_seed(job.seed, step, me));
        let drawn: Vec<Vec<u32>> = (0..accum)
            .map(|_| incoming.recv().map_err(|_| "the data loader stopped".to_string()))
            .collect::<Result<_, _>>()?;
        let micro: Vec<(Tensor, Tensor)> = rank_rows(&drawn, micro_rows, width, me, world)
            .into_iter()
            .map(|(tokens, n)| to_tensors(tokens, n as i64, device))
            .collect();
        let out = trainer.step(&model, &micro)?;
        rows.window_tokens += job.tokens_per_step();
        trained_tokens += job.tokens_per_step();
        pending.push(Pending { step, tokens: trainer.tokens, lr: out.lr, loss: out.loss, grad_norm: out.grad_norm });
        if root && keep.contains(&trainer.tokens) {
            keep_checkpoint(&job.work, &trainer, trainer.tokens)?;
        }

        let is_eval = evals.contains(&step);
        let by_steps = job.checkpoint_steps > 0 && step.is_multiple_of(job.checkpoint_steps);
        let by_time =
            root && job.checkpoint_seconds > 0.0 && last_checkpoint.elapsed().as_secs_f64() >= job.checkpoint_seconds;
        let mut stop = step < total && STOP_REQUESTED.load(Ordering::SeqCst);
        let mut wants_checkpoint = step < total && (stop || by_steps || by_time);
        let sync = pending.len() >= SYNC_EVERY || is_eval || step == total;
        if let Some(group) = trainer.group() {
            // Ranks act on stop and time only where they all meet, so
            // every rank checkpoints and stops after the same step.
            if sync || (step < total && by_steps) {
                let (any_stop, due) = agree(group, &mut pending, stop, by_time)?;
                stop = step < total && any_stop;
                wants_checkpoint = step < total && (stop || by_steps || due);
            } else {
                (stop, wants_checkpoint) = (false, false);
            }
        }
        if sync || wants_checkpoint {
            for row in rows.rows(&mut pending)? {
                if let Some(metrics) = metrics.as_mut() {
                    MetricLog::append(&mut metrics.steps, &row)?;
                    eprintln!("{}", step_line(&row, total));
                    emit(Event::Step(row));
                }
            }
        }
        if is_eval && root {
            val_loss = evaluate(&model, &val_set);
            let row = EvalRow {
                step,
                tokens: trainer.tokens,
                val_loss,
                compute: Compute::at(&counts, trainer.tokens as f64),
            };
            eprintln!("step {step}/{total}: {} tokens, val loss {val_loss:.4} (evaluation)", trainer.tokens);
            if let Some(metrics) = metrics.as_mut() {
                MetricLog::append(&mut metrics.evals, &row)?;
            }
            emit(Event::Eval(row));
            rows.window_start = Instant::now(); // evaluation time is not training throughput
            rows.window_tokens = 0;
        }
        if wants_checkpoint {
            if let Some(metrics) = metrics.as_mut() {
                checkpoint(&job.work, &trainer, metrics)?;
                emit(Event::Checkpoint { step });
            }
            last_checkpoint = Instant::now();
            if stop {
                if root {
                    eprintln!(
                        "stopping after the checkpoint of step {step}, as asked (a signal); the next run resumes here"
                    );
                    emit(Event::Suspended { step });
                }
                return Ok(());
            }
            rows.window_start = Instant::now();
            rows.window_tokens = 0;
        }
    }
    let Some(mut metrics) = metrics else {
        return Ok(()); // the other ranks' part ends with the last step
    };
    metrics.durable_lengths()?;
    let tokens_per_second = trained_tokens as f64 / run_start.elapsed().as_secs_f64().max(1e-9);
    if world > 1 {
        let steps = (total - start).max(1) as f64;
        let (exchange, step_time) =
            (trainer.exchange_time.as_secs_f64() / steps, run_start.elapsed().as_secs_f64() / steps);
        eprintln!(
            "gradient exchange on rank 0: {:.2} ms a step of {:.2} ms ({:.0}%; {} floats summed over {world} ranks)",
            1e3 * exchange,
            1e3 * step_time,
            100.0 * exchange / step_time,
            trainer.layout().iter().map(|(_, shape)| shape.iter().product::<i64>()).sum::<i64>()
        );
    }
    let test_loss = test_loss(job, &model, device);
    write_artifact(job, &vs, &counts, &metrics.dir, val_loss, test_loss, step_used)?;
    emit(Event::Done { val_loss, test_loss, tokens_per_second });
    Ok(())
}

/// libtorch threads for a rank: its share of this machine's cores, or
/// what Slurm gave its task.
fn rank_threads(rank: &Rendezvous) -> usize {
    if let Some(cpus) = std::env::var("SLURM_CPUS_PER_TASK").ok().and_then(|v| v.parse::<usize>().ok()) {
        return cpus;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / rank.local_world.max(1)).max(1)
}

/// The device of this rank: the job's, or on CUDA with several ranks the
/// GPU of its local rank.
fn rank_device(spec: &str, rank: Option<&Rendezvous>) -> Result<(Device, String), String> {
    match rank {
        Some(r) if r.world > 1 && spec.starts_with("cuda") => crate::device::resolve(&format!("cuda:{}", r.local_rank)),
        _ => crate::device::resolve(spec),
    }
}

/// Loads the compiled step the job names into `trainer`; says which step
/// the run uses and why. A package that does not load is not fatal: the
/// run goes on eager and says so.
fn use_compiled_step(job: &TrainJob, vs: &nn::VarStore, trainer: &mut Trainer, whole_micro_batches: bool) -> String {
    let Some(compiled) = &job.compiled else { return "eager (compile: off)".into() };
    let Some(package) = &compiled.package else { return compiled.reason.clone() };
    if !whole_micro_batches {
        return format!(
            "eager: the {} ranks split micro-batches (batch_size / micro_batch does not divide by them), and the compiled step has a whole micro-batch's shape",
            job.devices
        );
    }
    match CompiledStep::load(package, vs) {
        Ok(step) => {
            trainer.use_compiled(step);
            compiled.reason.clone()
        }
        Err(e) => format!("eager, the compiled step did not load: {e}"),
    }
}

/// The final model's loss on the test split (the paper reports test loss),
/// on as many tokens as each validation; `None`, said in the log, when the
/// corpus has no test split large enough for one window, or the run diverged.
fn test_loss(job: &TrainJob, model: &Gpt, device: Device) -> Option<f64> {
    match held_out_set(job, "test", device) {
        Ok(set) => {
            let loss = evaluate(model, &set);
            eprintln!("test loss {loss:.4} (after the last step, {} tokens of the test split)", job.eval_tokens);
            loss.is_finite().then_some(loss)
        }
        Err(why) => {
            eprintln!("no test loss: {why}");
            None
        }
    }
}

/// The artifact: final weights (safetensors, fp32, unpadded names as in the
/// model), the run's [`TrainRecord`], and the metrics as JSONL and CSV.
fn write_artifact(
    job: &TrainJob,
    vs: &nn::VarStore,
    counts: &ParamCounts,
    work: &Path,
    val_loss: f64,
    test_loss: Option<f64>,
    step: String,
) -> Result<(), String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let mut weights: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(n, t)| (n, t.to_device(Device::Cpu).contiguous())).collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&weights, job.out.join("model.safetensors")).map_err(|e| e.to_string())?;
    let record = TrainRecord {
        model: job.model.clone(),
        precision: job.precision,
        params: *counts,
        steps: job.total_steps(),
        tokens: job.total_steps() * job.tokens_per_step(),
        batch_size: job.batch_size,
        optim: job.optim.clone(),
        eval_tokens: job.eval_tokens,
        val_loss,
        test_loss,
        branched_at: job.branch_from.as_ref().map(|b| b.tokens),
        step: Some(step),
    };
    for &tokens in &job.keep_checkpoints {
        let (from, to) = (work.join(kept_checkpoint(tokens)), job.out.join(kept_checkpoint(tokens)));
        fs::create_dir_all(to.parent().expect("in a directory")).map_err(|e| io(&to, e))?;
        fs::copy(&from, &to).map_err(|e| io(&from, e))?;
    }
    let config_path = job.out.join(RECORD_FILE);
    fs::write(&config_path, serde_json::to_vec_pretty(&record).map_err(|e| e.to_string())?)
        .map_err(|e| io(&config_path, e))?;
    let metrics_dir = job.out.join("metrics");
    fs::create_dir_all(&metrics_dir).map_err(|e| io(&metrics_dir, e))?;
    for (name, columns) in [("steps", STEP_COLUMNS), ("eval", EVAL_COLUMNS)] {
        let jsonl = work.join(format!("{name}.jsonl"));
        fs::copy(&jsonl, metrics_dir.join(format!("{name}.jsonl"))).map_err(|e| io(&jsonl, e))?;
        let csv_path = metrics_dir.join(format!("{name}.csv"));
        let csv = jsonl_to_csv(&jsonl, columns).map_err(|e| io(&jsonl, e))?;
        fs::write(&csv_path, csv).map_err(|e| io(&csv_path, e))?;
    }
    Ok(())
}

/// CSV columns of the step rows, as paths into the JSON rows.
const STEP_COLUMNS: &[&str] = &[
    "step",
    "tokens",
    "lr",
    "loss",
    "grad_norm",
    "compute.trainable",
    "compute.frozen_2_3",
    "compute.frozen_full",
    "compute.fastfood_free",
    "tokens_per_second",
    "mfu",
];
/// CSV columns of the evaluation rows.
const EVAL_COLUMNS: &[&str] = &[
    "step",
    "tokens",
    "val_loss",
    "compute.trainable",
    "compute.frozen_2_3",
    "compute.frozen_full",
    "compute.fastfood_free",
];

/// Flattens JSON lines into CSV (headers use `_` for nesting: `compute_trainable`).
fn jsonl_to_csv(path: &Path, columns: &[&str]) -> std::io::Result<String> {
    let mut csv = columns.iter().map(|c| c.replace('.', "_")).collect::<Vec<_>>().join(",");
    csv.push('\n');
    for line in BufReader::new(File::open(path)?).lines() {
        let row: serde_json::Value = serde_json::from_str(&line?).map_err(std::io::Error::other)?;
        let cells: Vec<String> = columns
            .iter()
            .map(|c| {
                let v = c.split('.').fold(&row, |v, key| &v[key]);
                if v.is_null() {
                    String::new()
                } else {
                    v.to_string()
                }
            })
            .collect();
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    Ok(csv)
}
