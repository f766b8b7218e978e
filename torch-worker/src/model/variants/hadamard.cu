// Fast Walsh–Hadamard transform along the last dimension, one CUDA block
// per row, for n = 2^9 … 2^15, fp32 or bf16 (computed in fp32).
//
// Each thread owns E contiguous elements of its row (E = 8, 16 or 32, so
// that a block has at most 1024 threads) and the butterflies run in three
// tiers, cheapest first:
//   1. index bits 0 … log2(E)-1: inside the thread's registers;
//   2. the next 5 bits: across the warp with __shfl_xor_sync;
//   3. the remaining bits (which warp): radix-2 passes in shared memory.
// The transform is its own transpose (H is symmetric), so the backward
// pass is the same kernel. `scale` is 1 or 1/√n.

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace {

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

template <typename T, int E>
__global__ void fwht_kernel(const T* __restrict__ in, T* __restrict__ out, int log_n, float scale) {
    extern __shared__ float shared[];
    const int n = 1 << log_n;
    const int t = threadIdx.x;
    const int threads = n / E;
    const size_t row = static_cast<size_t>(blockIdx.x) * n;

    float v[E];
#pragma unroll
    for (int j = 0; j < E; ++j) v[j] = load(in + row + t * E + j);

    // 1. Registers: bits of j.
#pragma unroll
    for (int h = 1; h < E; h <<= 1) {
#pragma unroll
        for (int j = 0; j < E; ++j) {
            if ((j & h) == 0) {
                const float a = v[j], b = v[j + h];
                v[j] = a + b;
                v[j + h] = a - b;
            }
        }
    }

    // 2. Warp shuffles: bits of the lane (threads ≥ 32 by construction).
    const int lane = t & 31;
#pragma unroll
    for (int s = 1; s < 32; s <<= 1) {
        const bool upper = lane & s;
#pragma unroll
        for (int j = 0; j < E; ++j) {
            const float other = __shfl_xor_sync(0xffffffffu, v[j], s);
            v[j] = upper ? other - v[j] : v[j] + other;
        }
    }

    // 3. Shared memory: bits of the warp index.
    const int warps = threads / 32;
    if (warps > 1) {
#pragma unroll
        for (int j = 0; j < E; ++j) shared[t * E + j] = v[j];
        __syncthreads();
        for (int h = 32 * E; h < n; h <<= 1) {
            for (int p = t; p < n / 2; p += threads) {
                const int i = ((p & ~(h - 1)) << 1) | (p & (h - 1));
                const float a = shared[i], b = shared[i + h];
                shared[i] = a + b;
                shared[i + h] = a - b;
            }
            __syncthreads();
        }
#pragma unroll
        for (int j = 0; j < E; ++j) v[j] = shared[t * E + j];
    }

#pragma unroll
    for (int j = 0; j < E; ++j) store(out + row + t * E + j, v[j] * scale);
}

template <typename T, int E>
cudaError_t launch(const void* in, void* out, int64_t rows, int log_n, float scale, cudaStream_t stream) {
    const int n = 1 << log_n;
    const size_t shared = static_cast<size_t>(n) * sizeof(float);
    auto kernel = fwht_kernel<T, E>;
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
    if (err != cudaSuccess) return err;
    kernel<<<static_cast<unsigned>(rows), n / E, shared, stream>>>(static_cast<const T*>(in), static_cast<T*>(out), log_n, scale);
    return cudaGetLastError();
}

template <typename T>
cudaError_t dispatch(const void* in, void* out, int64_t rows, int log_n, float scale, cudaStream_t stream) {
    // At most 1024 threads: 8 elements each up to n = 8192, then 16, then 32.
    if (log_n <= 13) return launch<T, 8>(in, out, rows, log_n, scale, stream);
    if (log_n == 14) return launch<T, 16>(in, out, rows, log_n, scale, stream);
    return launch<T, 32>(in, out, rows, log_n, scale, stream);
}

}  // namespace

// `rows` rows of 2^log_n contiguous elements, 9 ≤ log_n ≤ 15.
cudaError_t scalemake_fwht_launch(const void* in, void* out, int64_t rows, int log_n, float scale, bool bf16, cudaStream_t stream) {
    if (log_n < 9 || log_n > 15 || rows <= 0 || rows > 0x7fffffff) return cudaErrorInvalidValue;
    return bf16 ? dispatch<__nv_bfloat16>(in, out, rows, log_n, scale, stream) : dispatch<float>(in, out, rows, log_n, scale, stream);
}
