//! Learning-rate schedules, in tokens: the paper's linear warmup then cosine
//! decay to a floor, and warmup–stable–decay (WSD), whose rate holds at its
//! peak until a decay at the end of the run.
//!
//! Budgets are in tokens (409.6M warmup, 32.8G decay in the paper) so that a
//! schedule means the same thing whatever the batch size. The rate is a
//! function of tokens alone, so a WSD run and a cooldown branch taken from
//! its stable phase use the same rates up to the branch point.

use scalemake::train::job::Wsd;

/// Learning rate as a function of tokens seen.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// Peak learning rate (5e-4 in the paper; 3e-4 for Medium).
    pub peak_lr: f64,
    /// Tokens of linear warmup from 0 to `peak_lr`.
    pub warmup_tokens: f64,
    /// Tokens after which the cosine reaches its floor.
    pub decay_tokens: f64,
    /// Floor, as a fraction of `peak_lr`.
    pub final_fraction: f64,
    /// Warmup–stable–decay: the decay runs from its start to `decay_tokens`
    /// in its shape (`None`: a cosine from the end of the warmup).
    pub wsd: Option<Wsd>,
}

impl Schedule {
    /// The learning rate after `tokens` tokens.
    pub fn lr(&self, tokens: f64) -> f64 {
        let floor = self.peak_lr * self.final_fraction;
        if tokens < self.warmup_tokens {
            return self.peak_lr * tokens / self.warmup_tokens;
        }
        if tokens >= self.decay_tokens {
            return floor;
        }
        if let Some(wsd) = self.wsd {
            if tokens < wsd.decay_start_tokens {
                return self.peak_lr;
            }
            let progress = (tokens - wsd.decay_start_tokens) / (self.decay_tokens - wsd.decay_start_tokens);
            return floor + (self.peak_lr - floor) * wsd.shape.remaining(progress);
        }
        let progress = (tokens - self.warmup_tokens) / (self.decay_tokens - self.warmup_tokens);
        floor + (self.peak_lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let s =
            Schedule { peak_lr: 5e-4, warmup_tokens: 409.6e6, decay_tokens: 32.8e9, final_fraction: 0.1, wsd: None };
        assert_eq!(s.lr(0.0), 0.0);
        assert!((s.lr(204.8e6) - 2.5e-4).abs() < 1e-12);
        assert!((s.lr(409.6e6) - 5e-4).abs() < 1e-12);
        let mid = (409.6e6 + 32.8e9) / 2.0;
        assert!((s.lr(mid) - (5e-5 + 4.5e-4 * 0.5)).abs() < 1e-12);
        assert!((s.lr(32.8e9) - 5e-5).abs() < 1e-12);
        assert!((s.lr(40e9) - 5e-5).abs() < 1e-12);
        let mut last = f64::MAX;
        for t in (0..100).map(|i| 409.6e6 + i as f64 * 3.3e8) {
            assert!(s.lr(t) <= last);
            last = s.lr(t);
        }
    }

    #[test]
    fn wsd_holds_the_peak_then_decays_in_its_shape_to_the_floor() {
        use scalemake::train::job::DecayShape;
        for (shape, at_quarter) in [
            (DecayShape::Linear, 0.75),
            (DecayShape::Sqrt, 0.5),
            (DecayShape::Cosine, 0.5 * (1.0 + (0.25f64 * std::f64::consts::PI).cos())),
        ] {
            let wsd = Some(Wsd { decay_start_tokens: 800.0, shape });
            let s = Schedule { peak_lr: 1e-3, warmup_tokens: 100.0, decay_tokens: 1200.0, final_fraction: 0.0, wsd };
            assert_eq!(s.lr(50.0), 5e-4, "warmup as before");
            assert_eq!(s.lr(100.0), 1e-3);
            assert_eq!(s.lr(799.0), 1e-3, "stable until the decay starts");
            assert_eq!(s.lr(800.0), 1e-3);
            assert!((s.lr(900.0) - 1e-3 * at_quarter).abs() < 1e-15, "{shape:?}: {}", s.lr(900.0));
            assert!(s.lr(1199.0) > 0.0 && s.lr(1199.0) < 1e-4);
            assert_eq!(s.lr(1200.0), 0.0);
        }
    }
}
