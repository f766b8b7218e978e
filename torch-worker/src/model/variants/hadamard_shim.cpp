// The CUDA kernels of hadamard.cu beside it as libtorch autograd functions,
// callable from Rust: tch has no way to define a custom autograd Function,
// so this shim does, and exports one C entry point for each.

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdio>
#include <exception>

#include "hadamard.h"

namespace {

int dtype_code(at::ScalarType type) {
    switch (type) {
        case at::kFloat:
            return kScalemakeFloat32;
        case at::kBFloat16:
            return kScalemakeBFloat16;
        case at::kHalf:
            return kScalemakeFloat16;
        default:
            TORCH_CHECK(false, "the Hadamard kernels take fp32, bf16 or fp16, not ", type);
    }
}

int log2_of(int64_t n) {
    int log_n = 0;
    while ((int64_t{1} << log_n) < n) ++log_n;
    return log_n;
}

// Contiguous and 16-byte aligned, as the kernels' vector loads need (a
// contiguous view can start at any element).
at::Tensor packed(const at::Tensor& t) {
    at::Tensor c = t.contiguous();
    return reinterpret_cast<uintptr_t>(c.data_ptr()) % 16 == 0 ? c : c.clone();
}

cudaStream_t stream_of(const at::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.get_device()).stream(); }

void check(cudaError_t err, const char* what) { TORCH_CHECK(err == cudaSuccess, what, ": ", cudaGetErrorString(err)); }

at::Tensor transform(const at::Tensor& x, double scale) {
    TORCH_CHECK(x.is_cuda(), "the Hadamard kernel needs a CUDA tensor");
    const int64_t n = x.size(-1);
    TORCH_CHECK(n >= (1 << kScalemakeMinLogN) && n <= (1 << kScalemakeMaxLogN) && (n & (n - 1)) == 0,
                "the Hadamard kernel takes 2^8 … 2^15 features, not ", n);
    const int dtype = dtype_code(x.scalar_type());
    // Launch on the tensor's device, whichever is current.
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor in = packed(x);
    at::Tensor out = at::empty_like(in);
    if (in.numel() == 0) return out;
    check(scalemake_fwht(in.data_ptr(), out.data_ptr(), in.numel() / n, log2_of(n), static_cast<float>(scale), dtype,
                         stream_of(in)),
          "Hadamard kernel");
    return out;
}

struct Hadamard : public torch::autograd::Function<Hadamard> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, double scale) {
        ctx->saved_data["scale"] = scale;
        return transform(x, scale);
    }

    // H is symmetric: the gradient is the same transform of the incoming gradient.
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        const double scale = ctx->saved_data["scale"].toDouble();
        return {transform(grads[0], scale), at::Tensor()};
    }
};

// The layer's shape and parameters as the kernels take them.
ScalemakeFastfood layer_of(const at::Tensor& x, const at::Tensor& b, const at::Tensor& g, const at::Tensor& s,
                           const at::Tensor& bias, const at::Tensor& perm, int64_t out_dim) {
    return ScalemakeFastfood{b.data_ptr<float>(),   g.data_ptr<float>(),    s.data_ptr<float>(),
                             bias.data_ptr<float>(), perm.data_ptr<int32_t>(), x.size(0),
                             static_cast<int>(x.size(1)), static_cast<int>(out_dim), static_cast<int>(b.size(0)),
                             log2_of(b.size(1))};
}

// One Adaptive FastFood layer (hadamard.h): x (rows, in_dim); b, g, s
// (blocks, n) and bias (out_dim) fp32 parameters; perm (blocks, n) int32.
struct Fastfood : public torch::autograd::Function<Fastfood> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& b_in,
                              const at::Tensor& g_in, const at::Tensor& s_in, const at::Tensor& bias_in,
                              const at::Tensor& perm_in, int64_t out_dim) {
        TORCH_CHECK(x_in.is_cuda() && x_in.dim() == 2, "the FastFood kernel takes a (rows, features) CUDA tensor");
        for (const at::Tensor* p : {&b_in, &g_in, &s_in, &bias_in})
            TORCH_CHECK(p->scalar_type() == at::kFloat && p->device() == x_in.device(),
                        "FastFood parameters must be fp32 on the input's device");
        TORCH_CHECK(perm_in.scalar_type() == at::kInt && perm_in.device() == x_in.device(),
                    "the FastFood permutation must be int32 on the input's device");
        const int64_t n = b_in.dim() == 2 ? b_in.size(1) : 0;
        TORCH_CHECK(n > 0 && (n & (n - 1)) == 0 && g_in.sizes() == b_in.sizes() && s_in.sizes() == b_in.sizes() &&
                        perm_in.sizes() == b_in.sizes() && bias_in.numel() == out_dim,
                    "FastFood shapes: b, g, s and perm (blocks, n) with n a power of two, bias (out_dim)");
        const c10::cuda::CUDAGuard guard(x_in.device());
        const at::Tensor x = packed(x_in), b = packed(b_in), g = packed(g_in), s = packed(s_in);
        const at::Tensor bias = packed(bias_in), perm = packed(perm_in);
        const ScalemakeFastfood layer = layer_of(x, b, g, s, bias, perm, out_dim);
        at::Tensor y = at::empty({x.size(0), out_dim}, x.options());
        ctx->save_for_backward({x, b, g, s, bias, perm});
        ctx->saved_data["out_dim"] = out_dim;
        if (layer.rows == 0) return y;
        check(scalemake_fastfood_forward(x.data_ptr(), y.data_ptr(), layer, dtype_code(x.scalar_type()), stream_of(x)),
              "FastFood kernel");
        // The backward pass recomputes the transforms from x: nothing else is kept.
        return y;
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        const auto saved = ctx->get_saved_variables();
        const at::Tensor &x = saved[0], &b = saved[1], &g = saved[2], &s = saved[3], &bias = saved[4], &perm = saved[5];
        const int64_t out_dim = ctx->saved_data["out_dim"].toInt();
        const at::Tensor dy = packed(grads[0].to(x.scalar_type()));
        const ScalemakeFastfood layer = layer_of(x, b, g, s, bias, perm, out_dim);
        const c10::cuda::CUDAGuard guard(x.device());
        if (layer.rows == 0)
            return {at::zeros_like(x), at::zeros_like(b), at::zeros_like(g), at::zeros_like(s), at::zeros_like(bias),
                    at::Tensor(), at::Tensor()};
        const int groups = scalemake_fastfood_partial_rows(layer.rows);
        at::Tensor dx_parts = at::empty({layer.blocks, layer.rows, layer.in_dim}, x.options());
        at::Tensor partials = at::empty({groups, 3, layer.blocks, b.size(1)}, b.options());
        check(scalemake_fastfood_backward(x.data_ptr(), dy.data_ptr(), dx_parts.data_ptr(), partials.data_ptr<float>(),
                                          groups, layer, dtype_code(x.scalar_type()), stream_of(x)),
              "FastFood kernel (backward)");
        at::Tensor dx = layer.blocks == 1 ? dx_parts[0] : dx_parts.sum(0, false, at::kFloat).to(x.scalar_type());
        at::Tensor sums = partials.sum(0);
        return {dx, sums[0], sums[1], sums[2], dy.sum(0, false, at::kFloat), at::Tensor(), at::Tensor()};
    }
};

template <typename F>
at::Tensor* guarded(F f, char* error, size_t error_len) {
    try {
        return new at::Tensor(f());
    } catch (const std::exception& e) {
        std::snprintf(error, error_len, "%s", e.what());
        return nullptr;
    }
}

}  // namespace

// Each returns a new tensor (owned by the caller, as tch's `Tensor::from_ptr`
// expects), or null with the reason in `error`.
extern "C" at::Tensor* scalemake_hadamard_cuda(const at::Tensor* x, double scale, char* error, size_t error_len) {
    return guarded([&] { return Hadamard::apply(*x, scale); }, error, error_len);
}

extern "C" at::Tensor* scalemake_fastfood_cuda(const at::Tensor* x, const at::Tensor* b, const at::Tensor* g,
                                               const at::Tensor* s, const at::Tensor* bias, const at::Tensor* perm,
                                               int64_t out_dim, char* error, size_t error_len) {
    return guarded([&] { return Fastfood::apply(*x, *b, *g, *s, *bias, *perm, out_dim); }, error, error_len);
}
