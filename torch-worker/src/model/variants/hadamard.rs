//! The Walsh–Hadamard transform along the last dimension.
//!
//! One interface, [`hadamard`], over two implementations, chosen per call:
//! - [`reference`]: Sylvester's H_n for n = 2^k is the Kronecker product of
//!   small Hadamard matrices, H_n = H_a ⊗ H_b ⊗ …, so the transform is a
//!   reshape to (…, a, b, …) and one small matmul per factor: O(n · Σ factor)
//!   work instead of O(n²), exact, autograd for free, any device. It runs
//!   on the CPU and is what tests check the kernel against.
//! - [`kernel`]: the CUDA kernel of `hadamard.cu` beside this file through its autograd
//!   shim, for CUDA tensors in fp32 or bf16 with 2^9 … 2^15 features, when
//!   the build found an nvcc ([`KERNEL_BUILT`]).

use tch::{Kind, Tensor};

/// Largest factor: small enough that each matmul is cheap, large enough for few passes.
const MAX_FACTOR_BITS: u32 = 5;

/// Sylvester's Hadamard matrix of order `m` (a power of two), entries ±1.
pub fn hadamard_matrix(m: i64, kind: Kind, device: tch::Device) -> Tensor {
    let values: Vec<f32> =
        (0..m * m).map(|i| if ((i / m) & (i % m)).count_ones().is_multiple_of(2) { 1.0 } else { -1.0 }).collect();
    Tensor::from_slice(&values).view([m, m]).to_kind(kind).to_device(device)
}

/// Whether this build has the CUDA kernel.
pub const KERNEL_BUILT: bool = cfg!(hadamard_cuda);

/// y = x·H_n over the last dimension (n a power of two); divided by √n
/// when `normalized` (then H is orthonormal and its own inverse). Uses the
/// CUDA kernel where it applies, else the reference.
pub fn hadamard(x: &Tensor, normalized: bool) -> Tensor {
    #[cfg(hadamard_cuda)]
    if kernel::applies(x) {
        match kernel::hadamard(x, normalized) {
            Ok(y) => return y,
            Err(e) => panic!("Hadamard kernel: {e}"),
        }
    }
    reference(x, normalized)
}

/// The Kronecker-factorised transform (see the module docs).
pub fn reference(x: &Tensor, normalized: bool) -> Tensor {
    let shape = x.size();
    let n = *shape.last().expect("at least one dimension");
    assert!(n > 0 && (n as u64).is_power_of_two(), "Hadamard size {n} is not a power of two");
    let bits = (n as u64).trailing_zeros();
    let mut factors = Vec::new();
    let mut left = bits;
    while left > 0 {
        let b = left.min(MAX_FACTOR_BITS);
        factors.push(1i64 << b);
        left -= b;
    }
    let mut view = vec![-1i64];
    view.extend(&factors);
    let mut y = x.reshape(view.as_slice());
    let last = factors.len() as i64;
    for (axis, &m) in factors.iter().enumerate() {
        let h = hadamard_matrix(m, x.kind(), x.device());
        // H is symmetric: transforming one axis is a matmul with H on that axis.
        y = y.movedim_int(axis as i64 + 1, last).matmul(&h).movedim_int(last, axis as i64 + 1);
    }
    let y = y.reshape(shape.as_slice());
    if normalized {
        y / (n as f64).sqrt()
    } else {
        y
    }
}

/// The CUDA kernel (`hadamard.cu` beside this file) as an autograd function.
#[cfg(hadamard_cuda)]
pub mod kernel {
    use std::ffi::{c_char, CStr};

    use tch::{Kind, Tensor};

    extern "C" {
        fn scalemake_hadamard_cuda(
            x: *const torch_sys::C_tensor,
            scale: f64,
            error: *mut c_char,
            error_len: usize,
        ) -> *mut torch_sys::C_tensor;
    }

    /// Whether the kernel handles `x`: CUDA, fp32 or bf16, 2^9 … 2^15 features.
    pub fn applies(x: &Tensor) -> bool {
        let n = x.size().last().copied().unwrap_or(0);
        x.device().is_cuda()
            && matches!(x.kind(), Kind::Float | Kind::BFloat16)
            && (512..=32768).contains(&n)
            && (n as u64).is_power_of_two()
    }

    /// Kernel against reference (in fp64), forward and backward, fp32 and
    /// bf16, every supported size, normalised or not, on CUDA device
    /// `index`; the worst errors per case, or the first case out of tolerance.
    pub fn check_against_reference(index: usize) -> Result<Vec<String>, String> {
        let device = tch::Device::Cuda(index);
        let mut report = Vec::new();
        for kind in [Kind::Float, Kind::BFloat16] {
            for bits in 9..=15 {
                for normalized in [true, false] {
                    let n = 1i64 << bits;
                    let x = Tensor::randn([3, 7, n], (Kind::Float, device)).to_kind(kind).set_requires_grad(true);
                    let g = Tensor::randn([3, 7, n], (Kind::Float, device)).to_kind(kind);
                    let ours = hadamard(&x, normalized)?;
                    let loss = (ours.to_kind(Kind::Float) * g.to_kind(Kind::Float)).sum(Kind::Float);
                    let grad_ours = Tensor::run_backward(&[&loss], &[&x], false, false)[0].shallow_clone();
                    let x64 = x.detach().to_kind(Kind::Double).set_requires_grad(true);
                    let want = super::reference(&x64, normalized);
                    let loss64 = (&want * g.to_kind(Kind::Double)).sum(Kind::Double);
                    let grad_want = Tensor::run_backward(&[&loss64], &[&x64], false, false)[0].shallow_clone();
                    // Outputs grow like √n unnormalised; bf16 keeps 8 bits of mantissa.
                    let scale = if normalized { 1.0 } else { (n as f64).sqrt() };
                    let tol = if kind == Kind::Float { 1e-4 } else { 5e-2 } * scale;
                    let err = (ours.to_kind(Kind::Double) - &want).abs().max().double_value(&[]);
                    let grad_err = (grad_ours.to_kind(Kind::Double) - &grad_want).abs().max().double_value(&[]);
                    let line = format!("{kind:?} n={n} normalized={normalized}: forward error {err:.2e}, backward error {grad_err:.2e} (tolerance {tol:.1e})");
                    if err >= tol || grad_err >= tol {
                        return Err(line);
                    }
                    report.push(line);
                }
            }
        }
        Ok(report)
    }

    /// The transform of `x` by the kernel (differentiable).
    pub fn hadamard(x: &Tensor, normalized: bool) -> Result<Tensor, String> {
        let n = x.size().last().copied().unwrap_or(1);
        let scale = if normalized { 1.0 / (n as f64).sqrt() } else { 1.0 };
        let mut error = [0 as c_char; 512];
        // SAFETY: the shim reads `x` and returns a new owned tensor, or null
        // with a NUL-terminated message in `error`.
        let out = unsafe { scalemake_hadamard_cuda(x.as_ptr(), scale, error.as_mut_ptr(), error.len()) };
        if out.is_null() {
            return Err(unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned());
        }
        // SAFETY: `out` is a fresh heap tensor whose ownership passes to us.
        Ok(unsafe { Tensor::from_ptr(out) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn h_times_h_is_n_times_identity() {
        for n in [1, 2, 8, 64, 1024] {
            let h = reference(&Tensor::eye(n, (Kind::Float, Device::Cpu)), false);
            assert!(h.equal(&hadamard_matrix(n, Kind::Float, Device::Cpu)), "transform of I is H_{n}");
            let hh = reference(&h, false);
            assert!(
                hh.allclose(&(Tensor::eye(n, (Kind::Float, Device::Cpu)) * n as f64), 0.0, 1e-3, false),
                "H·H = nI for n = {n}"
            );
        }
    }

    #[test]
    fn matches_the_dense_matrix_on_batches() {
        tch::manual_seed(0);
        let x = Tensor::randn([3, 5, 2048], (Kind::Double, Device::Cpu));
        let dense = x.matmul(&hadamard_matrix(2048, Kind::Double, Device::Cpu)) / (2048f64).sqrt();
        assert!(reference(&x, true).allclose(&dense, 1e-9, 1e-9, false));
        let back = reference(&reference(&x, true), true);
        assert!(back.allclose(&x, 1e-9, 1e-9, false), "normalised H is its own inverse");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        tch::manual_seed(1);
        let x = Tensor::randn([2, 64], (Kind::Double, Device::Cpu)).set_requires_grad(true);
        let w = Tensor::randn([2, 64], (Kind::Double, Device::Cpu));
        let f = |x: &Tensor| (reference(x, true) * &w).sum(Kind::Double);
        f(&x).backward();
        let grad = x.grad();
        let eps = 1e-6;
        for i in [0i64, 17, 63, 100] {
            let mut plus = x.detach().copy();
            let mut minus = x.detach().copy();
            let flat = |t: &mut Tensor, delta: f64| {
                let _ = t.view([-1]).get(i).g_add_scalar_(delta);
            };
            flat(&mut plus, eps);
            flat(&mut minus, -eps);
            let numeric = (f(&plus).double_value(&[]) - f(&minus).double_value(&[])) / (2.0 * eps);
            let analytic = grad.view([-1]).double_value(&[i]);
            assert!((numeric - analytic).abs() < 1e-6, "d/dx[{i}]: {numeric} vs {analytic}");
        }
    }

    /// Kernel against reference on the GPU. The GPU machine has no cargo:
    /// there `scalemake-torch check-hadamard` (from `benches/gpu/run.sh`)
    /// runs the same check on the carried binary.
    #[test]
    #[ignore = "needs a CUDA device and a build with nvcc (SCALEMAKE_CUDA_BUILD=1 scripts/setup.sh); run with --ignored there"]
    fn cuda_kernel_matches_the_reference() {
        if !KERNEL_BUILT {
            panic!("the CUDA kernel was not built: no nvcc at build time (SCALEMAKE_CUDA_BUILD=1 scripts/setup.sh)");
        }
        assert!(crate::device::cuda_ready(), "no CUDA device visible to libtorch");
        #[cfg(hadamard_cuda)]
        super::kernel::check_against_reference(0).unwrap();
    }
}
