//! Training: one optimiser step at a time, with the paper's settings, and
//! the loop that turns a [`scalemake::train::job::TrainJob`] into an artifact.
//!
//! Adam over flat buffers ([`flat`]), the token-based [`schedule::Schedule`],
//! gradient clipping by global norm, micro-batches accumulated into one
//! step. [`run`] adds data, evaluation, metrics and checkpoints.

pub mod compiled;
pub mod flat;
pub mod ranks;
pub mod run;
pub mod schedule;

use scalemake::train::job::OptimSpec;
use tch::{nn, Kind, Tensor};

use crate::distributed::Group;
use crate::model::gpt::Gpt;
use compiled::CompiledStep;
use flat::{Adam, FlatParams};
use schedule::Schedule;

/// What one step reports, still on the device (reading it syncs).
pub struct StepOutput {
    /// Mean training loss over the micro-batches (0-dim); with several
    /// ranks, this rank's part of it (the parts sum to the mean).
    pub loss: Tensor,
    /// Gradient norm before clipping (0-dim).
    pub grad_norm: Tensor,
    /// The learning rate used.
    pub lr: f64,
}

/// The parts of one optimiser step, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Forward and backward passes over every micro-batch (with zeroing the gradients).
    ForwardBackward,
    /// Summing the gradients over the data-parallel ranks (nothing on one).
    Exchange,
    /// The global gradient norm and clipping.
    Clip,
    /// Adam's update of the flat buffers.
    Update,
}

impl Phase {
    /// Every phase, in the order a step runs them.
    pub const ALL: [Phase; 4] = [Phase::ForwardBackward, Phase::Exchange, Phase::Clip, Phase::Update];

    /// The name `bench --phases` reports.
    pub fn name(self) -> &'static str {
        match self {
            Phase::ForwardBackward => "forward_backward",
            Phase::Exchange => "all_reduce",
            Phase::Clip => "clip",
            Phase::Update => "adam",
        }
    }
}

/// A model's optimiser and how far training has come.
pub struct Trainer {
    flat: FlatParams,
    adam: Adam,
    schedule: Schedule,
    clip: f64,
    /// The compiled forward+backward, when the run uses one.
    compiled: Option<CompiledStep>,
    /// The data-parallel group, when the run has several ranks.
    group: Option<Group>,
    /// Host time spent in gradient exchanges so far (the whole exchange
    /// with gloo, which blocks; only the enqueueing with NCCL, which does not).
    pub exchange_time: std::time::Duration,
    /// Tokens consumed so far (inputs, not targets).
    pub tokens: u64,
}

impl Trainer {
    /// Adam over the trainable variables of `vs`, which it moves into flat buffers.
    pub fn new(vs: &nn::VarStore, optim: &OptimSpec) -> Self {
        let flat = FlatParams::new(vs);
        let adam = Adam::new(&flat, optim.beta1, optim.beta2, optim.eps, optim.weight_decay);
        let schedule = Schedule {
            peak_lr: optim.lr,
            warmup_tokens: optim.warmup_tokens,
            decay_tokens: optim.decay_tokens,
            final_fraction: optim.final_lr_fraction,
            wsd: optim.wsd,
        };
        Trainer {
            flat,
            adam,
            schedule,
            clip: optim.clip,
            compiled: None,
            group: None,
            exchange_time: Default::default(),
            tokens: 0,
        }
    }

    /// Runs forward and backward through `step` from now on (it must have
    /// been compiled for this model's shape and device).
    pub fn use_compiled(&mut self, step: CompiledStep) {
        self.compiled = Some(step);
    }

    /// Trains as one rank of `group` from now on: rank 0's parameters
    /// become every rank's, and each step sums the gradients of all ranks.
    pub fn distribute(&mut self, group: Group) -> Result<(), String> {
        group.broadcast(&self.flat.params, 0)?;
        self.group = Some(group);
        Ok(())
    }

    /// The data-parallel group, if the run has one.
    pub fn group(&self) -> Option<&Group> {
        self.group.as_ref()
    }

    /// Whether steps run through a compiled package.
    pub fn is_compiled(&self) -> bool {
        self.compiled.is_some()
    }

    /// Optimiser steps taken.
    pub fn steps(&self) -> u64 {
        self.adam.step
    }

    /// One optimiser step over `micro_batches` of (inputs, targets), each
    /// (B, T) token ids: this rank's share of the step's batch, when the
    /// run has several (every rank holds as many rows). Nothing here waits
    /// for the device, except the gradient exchange between ranks; its
    /// failure (a rank died, or timed out) is the error.
    pub fn step(&mut self, model: &Gpt, micro_batches: &[(Tensor, Tensor)]) -> Result<StepOutput, String> {
        self.step_marked(model, micro_batches, &mut |_| {})
    }

    /// [`Trainer::step`], calling `mark` as each [`Phase`] ends: `bench
    /// --phases` syncs and reads a clock there to say where a step's time goes.
    ///
    /// Each micro-batch's mean loss is weighted by its share of the global
    /// batch's rows, so the gradients summed over the ranks are those of
    /// the whole batch's mean loss: what one device computes.
    pub fn step_marked(
        &mut self,
        model: &Gpt,
        micro_batches: &[(Tensor, Tensor)],
        mark: &mut dyn FnMut(Phase),
    ) -> Result<StepOutput, String> {
        let lr = self.schedule.lr(self.tokens as f64);
        let world = self.group.as_ref().map_or(1, |g| g.world) as i64;
        let rows = |x: &Tensor| x.size()[0];
        let global_rows = micro_batches.iter().map(|(x, _)| rows(x)).sum::<i64>() * world;
        // On one device with equal micro-batches this is their count, exactly.
        let divisor = |x: &Tensor| global_rows as f64 / rows(x) as f64;
        let mut total = Tensor::zeros([], (Kind::Float, self.flat.params.device()));
        match &self.compiled {
            None => {
                self.flat.zero_grad();
                for (x, y) in micro_batches {
                    let loss = model.loss(x, y, true) / divisor(x);
                    loss.backward();
                    total += loss.detach();
                }
            }
            // The package returns each micro-batch's mean loss and its
            // gradient; accumulating gradient/n is what backward of loss/n does.
            Some(step) => tch::no_grad(|| {
                for (i, (x, y)) in micro_batches.iter().enumerate() {
                    let (loss, grads) = step.run(&self.flat.params, x, y).unwrap_or_else(|e| panic!("{e}"));
                    let n = divisor(x);
                    let grads = if n != 1.0 { grads / n } else { grads };
                    if i == 0 {
                        self.flat.grads.copy_(&grads);
                    } else {
                        let _ = self.flat.grads.g_add_(&grads);
                    }
                    total += loss / n;
                }
            }),
        }
        self.tokens += micro_batches.iter().map(|(x, _)| x.numel() as u64).sum::<u64>() * world as u64;
        mark(Phase::ForwardBackward);
        if let Some(group) = &self.group {
            let started = std::time::Instant::now();
            group.all_reduce_sum(&self.flat.grads)?;
            self.exchange_time += started.elapsed();
        }
        mark(Phase::Exchange);
        let grad_norm = self.flat.clip_grad_norm(self.clip);
        mark(Phase::Clip);
        self.adam.update(&mut self.flat, lr);
        mark(Phase::Update);
        Ok(StepOutput { loss: total, grad_norm, lr })
    }

    /// Name and shape of every trainable parameter, in the flat buffers' order.
    pub fn layout(&self) -> &[(String, Vec<i64>)] {
        &self.flat.layout
    }

    /// Optimiser state and parameters, for a checkpoint.
    pub fn state(&self) -> Vec<(&'static str, &Tensor)> {
        vec![("params", &self.flat.params), ("exp_avg", &self.adam.exp_avg), ("exp_avg_sq", &self.adam.exp_avg_sq)]
    }

    /// Restores what [`Trainer::state`] saved, after `steps` steps and `tokens` tokens.
    pub fn restore(&mut self, saved: &[(String, Tensor)], steps: u64, tokens: u64) -> Result<(), String> {
        for (name, target) in [
            ("params", &mut self.flat.params),
            ("exp_avg", &mut self.adam.exp_avg),
            ("exp_avg_sq", &mut self.adam.exp_avg_sq),
        ] {
            let (_, source) =
                saved.iter().find(|(n, _)| n == name).ok_or_else(|| format!("checkpoint has no `{name}`"))?;
            if source.size() != target.size() {
                return Err(format!(
                    "checkpoint `{name}` has shape {:?}, the model needs {:?}",
                    source.size(),
                    target.size()
                ));
            }
            tch::no_grad(|| target.copy_(source));
        }
        self.adam.step = steps;
        self.tokens = tokens;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalemake::train::ModelShape;
    use tch::Device;

    /// Four steps of warmup, then a slow cosine: the schedule is exercised.
    fn optim(lr: f64) -> OptimSpec {
        OptimSpec { warmup_tokens: 4.0 * 64.0, decay_tokens: 1e9, final_lr_fraction: 0.1, ..OptimSpec::constant(lr) }
    }

    #[test]
    fn a_micro_model_overfits_one_batch() {
        tch::manual_seed(0);
        let cfg = ModelShape { dropout: 0.0, ..ModelShape::preset("micro", 256).unwrap() };
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Gpt::new(&vs.root(), &cfg, Kind::Float);
        let mut trainer = Trainer::new(&vs, &optim(3e-3));
        let data = Tensor::randint(256, [4, 17], (Kind::Int64, Device::Cpu));
        let batch = [(data.narrow(1, 0, 16), data.narrow(1, 1, 16))];
        let first = trainer.step(&model, &batch).unwrap().loss.double_value(&[]);
        assert!((first - 256f64.ln()).abs() < 0.1, "initial loss {first} ≈ ln 256");
        let mut last = first;
        for _ in 0..60 {
            last = trainer.step(&model, &batch).unwrap().loss.double_value(&[]);
        }
        assert!(last < 0.5, "loss {first:.3} → {last:.3}: a model must memorise one batch");
        assert_eq!(trainer.steps(), 61);
        assert_eq!(trainer.tokens, 61 * 64);
    }

    #[test]
    fn a_marked_step_names_its_phases_in_order_and_trains_the_same() {
        let cfg = ModelShape { dropout: 0.0, ..ModelShape::preset("nano", 128).unwrap() };
        let data = Tensor::randint(128, [2, 9], (Kind::Int64, Device::Cpu));
        let batch = [(data.narrow(1, 0, 8), data.narrow(1, 1, 8))];
        let losses = |marked: bool| {
            tch::manual_seed(5);
            let vs = nn::VarStore::new(Device::Cpu);
            let model = Gpt::new(&vs.root(), &cfg, Kind::Float);
            let mut trainer = Trainer::new(&vs, &optim(1e-3));
            let mut seen = Vec::new();
            let losses: Vec<f64> = (0..2)
                .map(|_| {
                    let out = if marked {
                        trainer.step_marked(&model, &batch, &mut |phase| seen.push(phase)).unwrap()
                    } else {
                        trainer.step(&model, &batch).unwrap()
                    };
                    out.loss.double_value(&[])
                })
                .collect();
            (losses, seen)
        };
        let (plain, none) = losses(false);
        let (marked, phases) = losses(true);
        assert!(none.is_empty());
        assert_eq!(plain, marked, "marks only observe the step");
        assert_eq!(phases, [Phase::ALL, Phase::ALL].concat());
    }

    #[test]
    fn accumulated_micro_batches_equal_one_large_batch() {
        let cfg = ModelShape { dropout: 0.0, ..ModelShape::preset("nano", 128).unwrap() };
        let data = Tensor::randint(128, [4, 9], (Kind::Int64, Device::Cpu));
        let run = |parts: i64| {
            tch::manual_seed(3);
            let vs = nn::VarStore::new(Device::Cpu);
            let model = Gpt::new(&vs.root(), &cfg, Kind::Float);
            let mut trainer = Trainer::new(&vs, &optim(1e-3));
            let rows = 4 / parts;
            let batches: Vec<(Tensor, Tensor)> = (0..parts)
                .map(|i| {
                    (data.narrow(0, i * rows, rows).narrow(1, 0, 8), data.narrow(0, i * rows, rows).narrow(1, 1, 8))
                })
                .collect();
            let out = trainer.step(&model, &batches).unwrap();
            (out.loss.double_value(&[]), trainer.flat.params.copy())
        };
        let (loss1, p1) = run(1);
        let (loss4, p4) = run(4);
        assert!((loss1 - loss4).abs() < 1e-5);
        assert!(p1.allclose(&p4, 1e-5, 1e-6, false));
    }
}
