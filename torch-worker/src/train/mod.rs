//! Training: one optimiser step at a time, with the paper's settings.
//!
//! Adam (no weight decay in the paper), the token-based [`schedule::Schedule`],
//! gradient clipping by global norm (1.0), micro-batches accumulated into
//! one step. The loop around it (data, evaluation, checkpoints) belongs to
//! the `train` node's worker command.

pub mod schedule;

use tch::nn::{self, OptimizerConfig};
use tch::Tensor;

use crate::model::gpt::Gpt;
use schedule::Schedule;

/// Optimiser settings.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimConfig {
    /// Adam β1.
    pub beta1: f64,
    /// Adam β2.
    pub beta2: f64,
    /// Adam ε.
    pub eps: f64,
    /// Weight decay (0 in the paper).
    pub weight_decay: f64,
    /// Global gradient-norm clip (1.0 in the paper).
    pub clip: f64,
    /// Learning rate by tokens seen.
    pub schedule: Schedule,
}

/// A model, its optimiser and how far training has come.
pub struct Trainer {
    opt: nn::Optimizer,
    optim: OptimConfig,
    /// Tokens consumed so far (inputs, not targets).
    pub tokens: f64,
    /// Optimiser steps taken.
    pub steps: u64,
}

impl Trainer {
    /// An Adam optimiser over the trainable variables of `vs`.
    pub fn new(vs: &nn::VarStore, optim: OptimConfig) -> Result<Self, tch::TchError> {
        let adam = nn::Adam { beta1: optim.beta1, beta2: optim.beta2, wd: optim.weight_decay, eps: optim.eps, amsgrad: false };
        Ok(Trainer { opt: adam.build(vs, optim.schedule.lr(0.0))?, optim, tokens: 0.0, steps: 0 })
    }

    /// One optimiser step over `micro_batches` of (inputs, targets), each
    /// (B, T) token ids; returns the mean training loss.
    pub fn step(&mut self, model: &Gpt, micro_batches: &[(Tensor, Tensor)]) -> f64 {
        self.opt.set_lr(self.optim.schedule.lr(self.tokens));
        self.opt.zero_grad();
        let mut total = 0.0;
        let n = micro_batches.len() as f64;
        for (x, y) in micro_batches {
            let loss = model.loss(x, y, true) / n;
            loss.backward();
            total += loss.double_value(&[]);
            self.tokens += x.numel() as f64;
        }
        self.opt.clip_grad_norm(self.optim.clip);
        self.opt.step();
        self.steps += 1;
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gpt::GptConfig;
    use tch::{Device, Kind};

    #[test]
    fn a_small_model_overfits_one_batch() {
        tch::manual_seed(0);
        let cfg = GptConfig { dropout: 0.0, ..GptConfig::nano(256) };
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Gpt::new(&vs.root(), &cfg);
        let schedule = Schedule { peak_lr: 3e-3, warmup_tokens: 4.0 * 64.0, decay_tokens: 1e9, final_fraction: 0.1 };
        let optim = OptimConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.0, clip: 1.0, schedule };
        let mut trainer = Trainer::new(&vs, optim).unwrap();
        let data = Tensor::randint(256, [4, 17], (Kind::Int64, Device::Cpu));
        let batch = [(data.narrow(1, 0, 16), data.narrow(1, 1, 16))];
        let first = trainer.step(&model, &batch);
        assert!((first - 256f64.ln()).abs() < 0.5, "initial loss {first} ≈ ln 256");
        let mut last = first;
        for _ in 0..60 {
            last = trainer.step(&model, &batch);
        }
        assert!(last < 0.5, "loss {first:.3} → {last:.3}: a model must memorise one batch");
        assert_eq!(trainer.steps, 61);
        assert_eq!(trainer.tokens, 61.0 * 64.0);
    }
}
