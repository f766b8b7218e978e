//! The Walsh–Hadamard transform along the last dimension.
//!
//! One interface, [`hadamard`], over two implementations, chosen per call:
//! - [`reference`]: Sylvester's H_n for n = 2^k is the Kronecker product of
//!   small Hadamard matrices, H_n = H_a ⊗ H_b ⊗ …, so the transform is a
//!   reshape to (…, a, b, …) and one small matmul per factor: O(n · Σ factor)
//!   work instead of O(n²), exact, autograd for free, any device. It runs
//!   on the CPU and is what tests check the kernels against.
//! - [`kernel`]: the CUDA kernels of `hadamard.cu` beside this file through
//!   their autograd shim, for CUDA tensors in fp32, bf16 or fp16 with
//!   2^8 … 2^15 features, when the build found an nvcc ([`KERNEL_BUILT`]).
//!   The kernels also fuse a whole FastFood layer ([`kernel::fastfood`]).
//!
//! `SCALEMAKE_HADAMARD_KERNEL=off` in the worker's environment makes every
//! call take the reference, so that benchmarks compare both in one process.

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

/// Whether the kernels may be used: built, and not switched off by
/// `SCALEMAKE_HADAMARD_KERNEL=off` (read once).
pub fn kernel_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    KERNEL_BUILT && *ENABLED.get_or_init(|| std::env::var("SCALEMAKE_HADAMARD_KERNEL").as_deref() != Ok("off"))
}

/// Element types the kernels read and write.
pub fn kernel_kind(kind: Kind) -> bool {
    matches!(kind, Kind::Float | Kind::BFloat16 | Kind::Half)
}

/// Feature counts the transform kernel takes: 2^8 … 2^15.
pub fn kernel_size(n: i64) -> bool {
    (256..=32768).contains(&n) && (n as u64).is_power_of_two()
}

/// Shapes the fused FastFood kernel takes: n = 2^8 … 2^13 (its row stays
/// on chip) and widths in multiples of 8 (16-byte vectors).
pub fn fastfood_kernel_shape(n: i64, in_dim: i64, out_dim: i64) -> bool {
    (256..=8192).contains(&n) && (n as u64).is_power_of_two() && in_dim % 8 == 0 && out_dim % 8 == 0
}

/// y = x·H_n over the last dimension (n a power of two); divided by √n
/// when `normalized` (then H is orthonormal and its own inverse). Uses the
/// CUDA kernel where it applies, else the reference.
pub fn hadamard(x: &Tensor, normalized: bool) -> Tensor {
    #[cfg(hadamard_cuda)]
    if kernel_enabled() && kernel::applies(x) {
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

/// The CUDA kernels (`hadamard.cu` beside this file) as autograd functions.
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
        #[allow(clippy::too_many_arguments)]
        fn scalemake_fastfood_cuda(
            x: *const torch_sys::C_tensor,
            b: *const torch_sys::C_tensor,
            g: *const torch_sys::C_tensor,
            s: *const torch_sys::C_tensor,
            bias: *const torch_sys::C_tensor,
            perm: *const torch_sys::C_tensor,
            out_dim: i64,
            error: *mut c_char,
            error_len: usize,
        ) -> *mut torch_sys::C_tensor;
    }

    /// Whether the transform kernel handles `x`: CUDA, fp32, bf16 or fp16, 2^8 … 2^15 features.
    pub fn applies(x: &Tensor) -> bool {
        x.device().is_cuda()
            && super::kernel_kind(x.kind())
            && super::kernel_size(x.size().last().copied().unwrap_or(0))
    }

    /// Turns the shim's answer (a new tensor, or null and a message) into a Result.
    fn owned(out: *mut torch_sys::C_tensor, error: &[c_char]) -> Result<Tensor, String> {
        if out.is_null() {
            // SAFETY: on null the shim wrote a NUL-terminated message into `error`.
            return Err(unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned());
        }
        // SAFETY: `out` is a fresh heap tensor whose ownership passes to us.
        Ok(unsafe { Tensor::from_ptr(out) })
    }

    /// The transform of `x` by the kernel (differentiable).
    pub fn hadamard(x: &Tensor, normalized: bool) -> Result<Tensor, String> {
        let n = x.size().last().copied().unwrap_or(1);
        let scale = if normalized { 1.0 / (n as f64).sqrt() } else { 1.0 };
        let mut error = [0 as c_char; 512];
        // SAFETY: the shim only reads `x`.
        let out = unsafe { scalemake_hadamard_cuda(x.as_ptr(), scale, error.as_mut_ptr(), error.len()) };
        owned(out, &error)
    }

    /// A whole Adaptive FastFood layer by the fused kernel (differentiable
    /// in `x`, `b`, `g`, `s` and `bias`): `x` (rows, in_dim) in fp32, bf16 or
    /// fp16; `b`, `g`, `s` (blocks, n) and `bias` (out_dim) fp32; `perm`
    /// (blocks, n) int32, the layer's permutation of its stacked features
    /// (each block's entries within that block).
    pub fn fastfood(
        x: &Tensor,
        b: &Tensor,
        g: &Tensor,
        s: &Tensor,
        bias: &Tensor,
        perm: &Tensor,
        out_dim: i64,
    ) -> Result<Tensor, String> {
        let mut error = [0 as c_char; 512];
        // SAFETY: the shim only reads its tensor arguments.
        let out = unsafe {
            scalemake_fastfood_cuda(
                x.as_ptr(),
                b.as_ptr(),
                g.as_ptr(),
                s.as_ptr(),
                bias.as_ptr(),
                perm.as_ptr(),
                out_dim,
                error.as_mut_ptr(),
                error.len(),
            )
        };
        owned(out, &error)
    }

    /// Kernel against reference (in fp64), forward and backward, fp32, bf16
    /// and fp16, every supported size, normalised or not, on CUDA device
    /// `index`; the worst errors per case, or the first case out of tolerance.
    pub fn check_against_reference(index: usize) -> Result<Vec<String>, String> {
        let device = tch::Device::Cuda(index);
        let mut report = Vec::new();
        for kind in [Kind::Float, Kind::BFloat16, Kind::Half] {
            for bits in 8..=15 {
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
                    // Outputs grow like √n unnormalised; bf16 keeps 8 bits of mantissa, fp16 11.
                    let scale = if normalized { 1.0 } else { (n as f64).sqrt() };
                    let tol = match kind {
                        Kind::Float => 1e-6,
                        Kind::Half => 1e-2,
                        _ => 5e-2,
                    } * scale;
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

    #[test]
    fn kernel_shapes_are_checked_on_the_host() {
        assert!(
            kernel_size(256) && kernel_size(32768) && !kernel_size(128) && !kernel_size(65536) && !kernel_size(768)
        );
        assert!(kernel_kind(Kind::BFloat16) && kernel_kind(Kind::Half) && !kernel_kind(Kind::Double));
        // small's FastFood projections: 768 → 3072 (n 1024) and 3072 → 768 (n 4096).
        assert!(fastfood_kernel_shape(1024, 768, 3072) && fastfood_kernel_shape(4096, 3072, 768));
        assert!(!fastfood_kernel_shape(16384, 16384, 4096), "past 2^13 the layer takes the transform kernel");
        assert!(!fastfood_kernel_shape(1024, 1020, 4080), "widths must be multiples of 8");
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
