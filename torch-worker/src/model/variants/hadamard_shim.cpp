// The CUDA Hadamard kernel (hadamard.cu beside it) as a libtorch autograd
// function, callable from Rust: tch has no way to define a custom autograd
// Function, so this shim does, and exports one C entry point.

#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdio>
#include <exception>

cudaError_t scalemake_fwht_launch(const void* in, void* out, int64_t rows, int log_n, float scale, bool bf16, cudaStream_t stream);

namespace {

at::Tensor transform(const at::Tensor& x, double scale) {
    TORCH_CHECK(x.is_cuda(), "the Hadamard kernel needs a CUDA tensor");
    TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16, "the Hadamard kernel takes fp32 or bf16");
    const int64_t n = x.size(-1);
    TORCH_CHECK(n >= 512 && n <= 32768 && (n & (n - 1)) == 0, "the Hadamard kernel takes 2^9 … 2^15 features, not ", n);
    at::Tensor in = x.contiguous();
    at::Tensor out = at::empty_like(in);
    int log_n = 0;
    while ((int64_t{1} << log_n) < n) ++log_n;
    const cudaError_t err = scalemake_fwht_launch(in.data_ptr(), out.data_ptr(), in.numel() / n, log_n, static_cast<float>(scale),
                                                  in.scalar_type() == at::kBFloat16, c10::cuda::getCurrentCUDAStream(in.get_device()).stream());
    TORCH_CHECK(err == cudaSuccess, "Hadamard kernel: ", cudaGetErrorString(err));
    return out;
}

struct Hadamard : public torch::autograd::Function<Hadamard> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, double scale) {
        ctx->saved_data["scale"] = scale;
        return transform(x, scale);
    }

    // H is symmetric: the gradient is the same transform of the incoming gradient.
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
        const double scale = ctx->saved_data["scale"].toDouble();
        return {transform(grads[0], scale), at::Tensor()};
    }
};

}  // namespace

// Returns a new tensor (owned by the caller, as tch's `Tensor::from_ptr`
// expects), or null with the reason in `error`.
extern "C" at::Tensor* scalemake_hadamard_cuda(const at::Tensor* x, double scale, char* error, size_t error_len) {
    try {
        return new at::Tensor(Hadamard::apply(*x, scale));
    } catch (const std::exception& e) {
        std::snprintf(error, error_len, "%s", e.what());
        return nullptr;
    }
}
