//! The Walsh–Hadamard transform along the last dimension.
//!
//! One interface, [`hadamard`], over the implementations: the Kronecker
//! reference here (exact, autograd for free, any device) is what runs on the
//! CPU and what tests check against. Sylvester's H_n for n = 2^k is the
//! Kronecker product of small Hadamard matrices, H_n = H_a ⊗ H_b ⊗ …, so the
//! transform is a reshape to (…, a, b, …) and one small matmul per factor:
//! O(n · Σ factor) work instead of O(n²).

use tch::{Kind, Tensor};

/// Largest factor: small enough that each matmul is cheap, large enough for few passes.
const MAX_FACTOR_BITS: u32 = 5;

/// Sylvester's Hadamard matrix of order `m` (a power of two), entries ±1.
pub fn hadamard_matrix(m: i64, kind: Kind, device: tch::Device) -> Tensor {
    let values: Vec<f32> = (0..m * m).map(|i| if ((i / m) & (i % m)).count_ones().is_multiple_of(2) { 1.0 } else { -1.0 }).collect();
    Tensor::from_slice(&values).view([m, m]).to_kind(kind).to_device(device)
}

/// y = x·H_n over the last dimension (n a power of two); divided by √n
/// when `normalized` (then H is orthonormal and its own inverse).
pub fn hadamard(x: &Tensor, normalized: bool) -> Tensor {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn h_times_h_is_n_times_identity() {
        for n in [1, 2, 8, 64, 1024] {
            let h = hadamard(&Tensor::eye(n, (Kind::Float, Device::Cpu)), false);
            assert!(h.equal(&hadamard_matrix(n, Kind::Float, Device::Cpu)), "transform of I is H_{n}");
            let hh = hadamard(&h, false);
            assert!(hh.allclose(&(Tensor::eye(n, (Kind::Float, Device::Cpu)) * n as f64), 0.0, 1e-3, false), "H·H = nI for n = {n}");
        }
    }

    #[test]
    fn matches_the_dense_matrix_on_batches() {
        tch::manual_seed(0);
        let x = Tensor::randn([3, 5, 2048], (Kind::Double, Device::Cpu));
        let dense = x.matmul(&hadamard_matrix(2048, Kind::Double, Device::Cpu)) / (2048f64).sqrt();
        assert!(hadamard(&x, true).allclose(&dense, 1e-9, 1e-9, false));
        let back = hadamard(&hadamard(&x, true), true);
        assert!(back.allclose(&x, 1e-9, 1e-9, false), "normalised H is its own inverse");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        tch::manual_seed(1);
        let x = Tensor::randn([2, 64], (Kind::Double, Device::Cpu)).set_requires_grad(true);
        let w = Tensor::randn([2, 64], (Kind::Double, Device::Cpu));
        let f = |x: &Tensor| (hadamard(x, true) * &w).sum(Kind::Double);
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
}
