//! Trainable parameters and their gradients as views into two flat fp32
//! buffers, and Adam over them.
//!
//! With every parameter a slice of one tensor, Adam and global-norm clipping
//! are a handful of large kernels instead of several per parameter tensor —
//! what PyTorch's fused and foreach Adam buy. The tch 0.24 C API exposes
//! neither `_fused_adam_` nor the `_foreach_*` ops, so this is the way to
//! get one-kernel-per-op updates from Rust without a C++ shim.

use tch::{nn, Kind, Tensor};

/// Trainable parameters and gradients, each a view into a flat buffer.
pub struct FlatParams {
    /// All trainable parameters, concatenated in name order.
    pub params: Tensor,
    /// Their gradients, same layout; backward accumulates into it in place.
    pub grads: Tensor,
    /// Name and shape of each parameter, in buffer order.
    pub layout: Vec<(String, Vec<i64>)>,
}

impl FlatParams {
    /// Re-points every trainable variable of `vs` (and its gradient) into
    /// fresh flat buffers, keeping the values.
    ///
    /// Autograd accumulates into an existing `.grad` in place, so once each
    /// gradient is a view into `grads`, every backward lands there. A first
    /// backward of Σ 0·p creates the gradients so they can be re-pointed.
    pub fn new(vs: &nn::VarStore) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let total: i64 = vars.iter().map(|(_, t)| t.numel() as i64).sum();
        let options = (Kind::Float, vs.device());
        let params = Tensor::zeros([total], options);
        let grads = Tensor::zeros([total], options);
        let primer =
            vars.iter().map(|(_, p)| (p * 0.0).sum(Kind::Float)).fold(Tensor::zeros([], options), |a, b| a + b);
        primer.backward();
        let mut offset = 0;
        for (_, var) in &mut vars {
            let n = var.numel() as i64;
            let shape = var.size();
            let mut view = params.narrow(0, offset, n).view(shape.as_slice());
            tch::no_grad(|| view.copy_(var));
            var.set_data(&view);
            var.grad().set_data(&grads.narrow(0, offset, n).view(shape.as_slice()));
            offset += n;
        }
        let mut grads = grads;
        let _ = grads.zero_();
        let layout = vars.iter().map(|(name, t)| (name.clone(), t.size())).collect();
        FlatParams { params, grads, layout }
    }

    /// Clears the gradients (one kernel).
    pub fn zero_grad(&mut self) {
        let _ = self.grads.zero_();
    }

    /// Scales the gradients so their global L2 norm is at most `max_norm`
    /// (as `torch.nn.utils.clip_grad_norm_`), without a host sync; returns
    /// the norm before clipping as a 0-dim tensor.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Tensor {
        let norm = self.grads.norm();
        if max_norm > 0.0 {
            let scale = (max_norm / (&norm + 1e-6)).clamp_max(1.0);
            let _ = self.grads.g_mul_(&scale);
        }
        norm
    }
}

/// Adam (Kingma & Ba) with PyTorch's bias correction and ε placement, and
/// optional decoupled weight decay (AdamW).
///
/// The update runs in place on the flat buffers with one preallocated
/// scratch buffer: no allocation per step, a few passes over memory (what
/// matters on CPUs, where Adam is bandwidth-bound).
pub struct Adam {
    /// First moment.
    pub exp_avg: Tensor,
    /// Second moment.
    pub exp_avg_sq: Tensor,
    /// Updates done (for bias correction).
    pub step: u64,
    scratch: Tensor,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl Adam {
    /// Zero state for `flat`.
    pub fn new(flat: &FlatParams, beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Self {
        let zeros = || flat.params.zeros_like();
        Adam { exp_avg: zeros(), exp_avg_sq: zeros(), scratch: zeros(), step: 0, beta1, beta2, eps, weight_decay }
    }

    /// One update of `flat.params` from `flat.grads` at learning rate `lr`.
    /// Consumes the gradients (they are scaled in place).
    pub fn update(&mut self, flat: &mut FlatParams, lr: f64) {
        self.step += 1;
        let bias1 = 1.0 - self.beta1.powi(self.step as i32);
        let bias2 = 1.0 - self.beta2.powi(self.step as i32);
        tch::no_grad(|| {
            let g = &mut flat.grads;
            // m ← β1·m + (1−β1)·g
            let _ = self.exp_avg.lerp_(g, 1.0 - self.beta1);
            // v ← β2·v + (1−β2)·g², with g scaled in place by √(1−β2)
            let _ = g.g_mul_scalar_((1.0 - self.beta2).sqrt());
            let _ = self.exp_avg_sq.g_mul_scalar_(self.beta2);
            let _ = self.exp_avg_sq.addcmul_(g, g);
            if lr == 0.0 {
                return; // first warmup step: moments only
            }
            if self.weight_decay > 0.0 {
                let _ = flat.params.g_mul_scalar_(1.0 - lr * self.weight_decay);
            }
            // p ← p − lr/(1−β1^t) · m / (√v/√(1−β2^t) + ε), as p + m / d with
            // d = −(1−β1^t)/lr · (√v/√(1−β2^t) + ε).
            let scale = -bias1 / lr;
            let _ = self.exp_avg_sq.sqrt_out(&self.scratch);
            let _ = self.scratch.g_mul_scalar_(scale / bias2.sqrt());
            let _ = self.scratch.g_add_scalar_(scale * self.eps);
            let _ = flat.params.addcdiv_(&self.exp_avg, &self.scratch);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn parameters_and_gradients_live_in_the_flat_buffers() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "a", 3, 2, Default::default());
        let w0 = lin.ws.copy();
        let mut flat = FlatParams::new(&vs);
        assert_eq!(flat.params.numel(), 3 * 2 + 2);
        assert!(lin.ws.allclose(&w0, 0.0, 0.0, false), "values survive the move");
        let x = Tensor::ones([4, 3], (Kind::Float, Device::Cpu));
        tch::nn::Module::forward(&lin, &x).sum(Kind::Float).backward();
        let grads: Vec<Tensor> = {
            let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            vars.iter().map(|(_, t)| t.grad().reshape([-1])).collect()
        };
        assert!(Tensor::cat(&grads, 0).equal(&flat.grads), "backward writes into the flat gradient");
        assert!(flat.grads.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        // An update through the flat buffer moves the layer's own weights.
        let mut adam = Adam::new(&flat, 0.9, 0.95, 1e-8, 0.0);
        adam.update(&mut flat, 0.1);
        assert!(!lin.ws.allclose(&w0, 1e-6, 1e-6, false));
        flat.zero_grad();
        assert_eq!(lin.ws.grad().abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn clipping_matches_the_global_norm_rule() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _p = vs.root().var("p", &[2], nn::Init::Const(0.0));
        let mut flat = FlatParams::new(&vs);
        flat.grads.copy_(&Tensor::from_slice(&[3.0f32, 4.0]));
        let norm = flat.clip_grad_norm(1.0).double_value(&[]);
        assert!((norm - 5.0).abs() < 1e-6);
        let clipped: Vec<f32> = Vec::try_from(&flat.grads).unwrap();
        assert!((clipped[0] - 0.6).abs() < 1e-5 && (clipped[1] - 0.8).abs() < 1e-5);
        let small = flat.clip_grad_norm(10.0).double_value(&[]);
        assert!((small - 1.0).abs() < 1e-5, "norms under the limit are left alone");
    }
}
