// Walsh–Hadamard transforms along the last dimension, written for memory
// bandwidth: each element is read once and written once, and everything in
// between happens in registers, warp shuffles and one shared-memory exchange.
// Two kinds of kernel (entry points and contracts in hadamard.h):
//   - the transform itself, y = scale · x·H_n, n = 2^8 … 2^15;
//   - a whole Adaptive FastFood layer, forward and backward, n ≤ 2^13:
//     the zero padding, the diagonals B, G, S, the permutation Π (through
//     shared memory), both transforms, the bias and the narrowing to the
//     output width in one pass over the row, instead of the seven tensor
//     operations (and their round trips to memory) of the reference.
// fp32, bf16 and fp16 in memory; arithmetic in fp32.
//
// Layout. One CUDA block per row (the backward pass strides over rows).
// Thread t of THREADS = min(256, n/8) holds CHUNKS = n/(8·THREADS) chunks of
// 8 consecutive elements, element (c·THREADS + t)·8 + e, so each chunk is one
// 16-byte load (two for fp32) and a warp's loads are contiguous. The
// transform's butterflies, one per index bit, commute, and run cheapest
// first (after Dao-AILab's fast-hadamard-transform, rewritten here):
//   bits 0–2 (e) and the top bits (c): inside the thread's registers;
//   bits 3–7 (the lane): across the warp, one __shfl_xor_sync per element;
//   bits 8… (the warp, ≤ 8 warps): one exchange through shared memory in
//     which each thread takes whole columns of the chunk's warps × 256
//     matrix, does their butterflies in registers and puts them back.
//
// Shared memory. Position (c·THREADS + t)·8 + e is "owned" by thread t:
// outside the bracketed middle of an exchange, a permutation's gather or its
// scatter, a thread touches only positions it owns, so the barriers sit only
// where threads read or write each other's.
//
// tests/cuda_emulation/ compiles this file for the CPU (with
// SCALEMAKE_EMULATE_CUDA, its threads as fibers) and checks every kernel
// against double-precision references.

#include "hadamard.h"

#ifndef SCALEMAKE_EMULATE_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define SCALEMAKE_LAUNCH(kernel, grid, block, shared, stream, ...) \
    kernel<<<grid, block, shared, stream>>>(__VA_ARGS__)
#define SCALEMAKE_SHARED_FLOATS(name)               \
    extern __shared__ float4 name##_storage[]; \
    float* name = reinterpret_cast<float*>(name##_storage)
#endif

namespace {

constexpr int kElems = 8;         // elements per chunk
constexpr int kWarpElems = 32 * kElems;
constexpr int kMaxThreads = 256;  // ≤ 8 warps: a thread then takes whole exchange columns
constexpr int kExchangeChunks = 4;  // chunks per exchange pass: ≤ 32 KiB of shared memory

// The block shape for n = 2^LOG_N.
template <int LOG_N>
struct Shape {
    static constexpr int kN = 1 << LOG_N;
    static constexpr int kThreads = kN / kElems < kMaxThreads ? kN / kElems : kMaxThreads;
    static constexpr int kChunks = kN / (kElems * kThreads);
    static constexpr int kWarps = kThreads / 32;
    static constexpr int kPass = kChunks < kExchangeChunks ? kChunks : kExchangeChunks;
    // Floats of shared memory the transform's exchange needs.
    static constexpr int kExchangeFloats = kWarps > 1 ? kPass * kThreads * kElems : 0;
};

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half(v); }

// 8 consecutive elements at p (aligned to 8 elements) to and from floats,
// by 16-byte vectors.
template <typename T>
__device__ __forceinline__ void load8(const T* p, float (&v)[kElems]) {
    constexpr int kVectors = sizeof(T) * kElems / 16;
    alignas(16) T e[kElems];
#pragma unroll
    for (int i = 0; i < kVectors; ++i) reinterpret_cast<uint4*>(e)[i] = reinterpret_cast<const uint4*>(p)[i];
#pragma unroll
    for (int i = 0; i < kElems; ++i) v[i] = to_float(e[i]);
}

template <typename T>
__device__ __forceinline__ void store8(T* p, const float (&v)[kElems]) {
    constexpr int kVectors = sizeof(T) * kElems / 16;
    alignas(16) T e[kElems];
#pragma unroll
    for (int i = 0; i < kElems; ++i) e[i] = from_float<T>(v[i]);
#pragma unroll
    for (int i = 0; i < kVectors; ++i) reinterpret_cast<uint4*>(p)[i] = reinterpret_cast<const uint4*>(e)[i];
}

__device__ __forceinline__ void load8(const int32_t* p, int (&v)[kElems]) {
    const int4 a = reinterpret_cast<const int4*>(p)[0], b = reinterpret_cast<const int4*>(p)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

__device__ __forceinline__ void butterfly(float& a, float& b) {
    const float sum = a + b;
    b = a - b;
    a = sum;
}

// Where this thread's chunk c starts in the row.
template <int THREADS>
__device__ __forceinline__ int chunk_start(int c) {
    return (c * THREADS + static_cast<int>(threadIdx.x)) * kElems;
}

template <int CHUNKS>
__device__ __forceinline__ void butterflies_in_thread(float (&x)[CHUNKS][kElems]) {
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c)
#pragma unroll
        for (int h = 1; h < kElems; h <<= 1)
#pragma unroll
            for (int e = 0; e < kElems; ++e)
                if ((e & h) == 0) butterfly(x[c][e], x[c][e + h]);
#pragma unroll
    for (int h = 1; h < CHUNKS; h <<= 1)
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c)
            if ((c & h) == 0)
#pragma unroll
                for (int e = 0; e < kElems; ++e) butterfly(x[c][e], x[c + h][e]);
}

template <int CHUNKS>
__device__ __forceinline__ void butterflies_across_lanes(float (&x)[CHUNKS][kElems]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int s = 1; s < 32; s <<= 1) {
        // The lane with bit s clear holds a and gets b (a + b); its partner gets a (a − b).
        const bool upper = lane & s;
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c)
#pragma unroll
            for (int e = 0; e < kElems; ++e) {
                const float other = __shfl_xor_sync(0xffffffffu, x[c][e], s);
                x[c][e] = upper ? other - x[c][e] : x[c][e] + other;
            }
    }
}

template <int LOG_N>
__device__ __forceinline__ void butterflies_across_warps(float (&x)[Shape<LOG_N>::kChunks][kElems], float* shared) {
    using S = Shape<LOG_N>;
    if constexpr (S::kWarps > 1) {
        // A chunk is a kWarps × 256 matrix (warp × lane·8 + e); its butterflies
        // run down the columns, kColumns of them per thread.
        constexpr int kColumns = kWarpElems / S::kThreads;
        const int t = threadIdx.x;
#pragma unroll
        for (int c0 = 0; c0 < S::kChunks; c0 += S::kPass) {
#pragma unroll
            for (int q = 0; q < S::kPass; ++q) store8(shared + (q * S::kThreads + t) * kElems, x[c0 + q]);
            __syncthreads();
#pragma unroll
            for (int q = 0; q < S::kPass; ++q)
#pragma unroll
                for (int j = 0; j < kColumns; ++j) {
                    float* column = shared + q * S::kThreads * kElems + t + j * S::kThreads;
                    float v[S::kWarps];
#pragma unroll
                    for (int w = 0; w < S::kWarps; ++w) v[w] = column[w * kWarpElems];
#pragma unroll
                    for (int h = 1; h < S::kWarps; h <<= 1)
#pragma unroll
                        for (int w = 0; w < S::kWarps; ++w)
                            if ((w & h) == 0) butterfly(v[w], v[w + h]);
#pragma unroll
                    for (int w = 0; w < S::kWarps; ++w) column[w * kWarpElems] = v[w];
                }
            __syncthreads();
            // Each thread reads back only what it owns: the next pass may write at once.
#pragma unroll
            for (int q = 0; q < S::kPass; ++q) load8(shared + (q * S::kThreads + t) * kElems, x[c0 + q]);
        }
    }
}

// x·H_n (unnormalised) of the row the block holds.
template <int LOG_N>
__device__ __forceinline__ void transform(float (&x)[Shape<LOG_N>::kChunks][kElems], float* shared) {
    butterflies_in_thread(x);
    butterflies_across_lanes(x);
    butterflies_across_warps<LOG_N>(x, shared);
}

// x[i] ← x[perm[i] − first] over the row (shared memory holds all n floats):
// `perm` is block j's part of the layer's permutation, which indexes the
// layer's stacked features, `first` = j·n.
template <int LOG_N>
__device__ __forceinline__ void gather(float (&x)[Shape<LOG_N>::kChunks][kElems], float* shared, const int32_t* perm,
                                       int first) {
    using S = Shape<LOG_N>;
#pragma unroll
    for (int c = 0; c < S::kChunks; ++c) store8(shared + chunk_start<S::kThreads>(c), x[c]);
    __syncthreads();
#pragma unroll
    for (int c = 0; c < S::kChunks; ++c) {
        int from[kElems];
        load8(perm + chunk_start<S::kThreads>(c), from);
#pragma unroll
        for (int e = 0; e < kElems; ++e) x[c][e] = shared[from[e] - first];
    }
    __syncthreads();
}

// x[perm[i] − first] ← x[i]: the transpose of gather, for the backward pass.
template <int LOG_N>
__device__ __forceinline__ void scatter(float (&x)[Shape<LOG_N>::kChunks][kElems], float* shared, const int32_t* perm,
                                        int first) {
    using S = Shape<LOG_N>;
    __syncthreads();  // other threads may still be reading what they own
#pragma unroll
    for (int c = 0; c < S::kChunks; ++c) {
        int to[kElems];
        load8(perm + chunk_start<S::kThreads>(c), to);
#pragma unroll
        for (int e = 0; e < kElems; ++e) shared[to[e] - first] = x[c][e];
    }
    __syncthreads();
#pragma unroll
    for (int c = 0; c < S::kChunks; ++c) load8(shared + chunk_start<S::kThreads>(c), x[c]);
}

// x ← x ⊙ w · scale, w a row of n floats.
template <int LOG_N>
__device__ __forceinline__ void multiply(float (&x)[Shape<LOG_N>::kChunks][kElems], const float* w, float scale) {
    using S = Shape<LOG_N>;
#pragma unroll
    for (int c = 0; c < S::kChunks; ++c) {
        float f[kElems];
        load8(w + chunk_start<S::kThreads>(c), f);
#pragma unroll
        for (int e = 0; e < kElems; ++e) x[c][e] *= f[e] * scale;
    }
}

// The first `width` elements of a row (a multiple of 8), zeros after.
template <int LOG_N, typename T>
__device__ __forceinline__ void load_prefix(float (&x)[Shape<LOG_N>::kChunks][kElems], const T* row, int width) {
    using S = Shape<LOG_N>;
#pragma unroll
    for (int c = 0; c < S::kChunks; ++c) {
        const int i = chunk_start<S::kThreads>(c);
        if (i < width) {
            load8(row + i, x[c]);
        } else {
#pragma unroll
            for (int e = 0; e < kElems; ++e) x[c][e] = 0.0f;
        }
    }
}

// Elements i < width of the row (the rest belong to no output).
template <int LOG_N, typename T>
__device__ __forceinline__ void store_prefix(T* row, int width, const float (&x)[Shape<LOG_N>::kChunks][kElems]) {
    using S = Shape<LOG_N>;
#pragma unroll
    for (int c = 0; c < S::kChunks; ++c) {
        const int i = chunk_start<S::kThreads>(c);
        if (i < width) store8(row + i, x[c]);
    }
}

template <typename T, int LOG_N>
__global__ void __launch_bounds__(Shape<LOG_N>::kThreads)
    fwht_kernel(const T* __restrict__ in, T* __restrict__ out, float scale) {
    using S = Shape<LOG_N>;
    SCALEMAKE_SHARED_FLOATS(shared);
    const size_t row = static_cast<size_t>(blockIdx.x) * S::kN;
    float x[S::kChunks][kElems];
#pragma unroll
    for (int c = 0; c < S::kChunks; ++c) load8(in + row + chunk_start<S::kThreads>(c), x[c]);
    transform<LOG_N>(x, shared);
#pragma unroll
    for (int c = 0; c < S::kChunks; ++c) {
#pragma unroll
        for (int e = 0; e < kElems; ++e) x[c][e] *= scale;
        store8(out + row + chunk_start<S::kThreads>(c), x[c]);
    }
}

// Block j of the layer for one row, up to the last transform: returns
// r = H·G_j·Π_j·H·B_j·pad(x) / n in `x`, and Π_j·H·B_j·pad(x) / √n in `kept`.
template <int LOG_N, typename T>
__device__ __forceinline__ void fastfood_rows(float (&x)[Shape<LOG_N>::kChunks][kElems],
                                              float (&kept)[Shape<LOG_N>::kChunks][kElems], const T* row,
                                              const ScalemakeFastfood& p, int j, float scale, float* shared) {
    using S = Shape<LOG_N>;
    load_prefix<LOG_N>(x, row, p.in_dim);
    multiply<LOG_N>(x, p.b + j * S::kN, 1.0f);
    transform<LOG_N>(x, shared);
    gather<LOG_N>(x, shared, p.perm + j * S::kN, j * S::kN);
#pragma unroll
    for (int c = 0; c < S::kChunks; ++c)
#pragma unroll
        for (int e = 0; e < kElems; ++e) kept[c][e] = x[c][e] * scale;
    multiply<LOG_N>(x, p.g + j * S::kN, scale);
    transform<LOG_N>(x, shared);
#pragma unroll
    for (int c = 0; c < S::kChunks; ++c)
#pragma unroll
        for (int e = 0; e < kElems; ++e) x[c][e] *= scale;
}

// Grid (rows, blocks): block j of one row.
template <typename T, int LOG_N>
__global__ void __launch_bounds__(Shape<LOG_N>::kThreads)
    fastfood_forward_kernel(const T* __restrict__ x, T* __restrict__ y, ScalemakeFastfood p, float scale) {
    using S = Shape<LOG_N>;
    SCALEMAKE_SHARED_FLOATS(shared);
    const int64_t row = blockIdx.x;
    const int j = blockIdx.y;
    float v[S::kChunks][kElems], kept[S::kChunks][kElems];
    fastfood_rows<LOG_N>(v, kept, x + row * p.in_dim, p, j, scale, shared);
    const int first = j * S::kN;  // this block's first output
#pragma unroll
    for (int c = 0; c < S::kChunks; ++c) {
        const int i = chunk_start<S::kThreads>(c);
        if (first + i >= p.out_dim) continue;
        float s[kElems], bias[kElems];
        load8(p.s + first + i, s);
        load8(p.bias + first + i, bias);
#pragma unroll
        for (int e = 0; e < kElems; ++e) v[c][e] = v[c][e] * s[e] + bias[e];
        store8(y + row * p.out_dim + first + i, v[c]);
    }
}

// Grid (partial_rows, blocks): block j of rows blockIdx.x, + gridDim.x, …;
// the parameter gradients accumulate in registers over those rows.
template <typename T, int LOG_N>
__global__ void __launch_bounds__(Shape<LOG_N>::kThreads)
    fastfood_backward_kernel(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dx,
                             float* __restrict__ partials, ScalemakeFastfood p, float scale) {
    using S = Shape<LOG_N>;
    SCALEMAKE_SHARED_FLOATS(shared);
    const int j = blockIdx.y;
    const int first = j * S::kN;
    float grad_b[S::kChunks][kElems] = {}, grad_g[S::kChunks][kElems] = {}, grad_s[S::kChunks][kElems] = {};
    for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
        float v[S::kChunks][kElems], kept[S::kChunks][kElems], d[S::kChunks][kElems];
        fastfood_rows<LOG_N>(v, kept, x + row * p.in_dim, p, j, scale, shared);
        // d = dy of this block's outputs (zero past out_dim); y = s ⊙ v + bias.
        const T* dy_row = dy + row * p.out_dim + first;
        load_prefix<LOG_N>(d, dy_row, p.out_dim - first);
#pragma unroll
        for (int c = 0; c < S::kChunks; ++c)
#pragma unroll
            for (int e = 0; e < kElems; ++e) grad_s[c][e] += d[c][e] * v[c][e];
        multiply<LOG_N>(d, p.s + first, scale);
        transform<LOG_N>(d, shared);  // d = dq, with q = g ⊙ kept
#pragma unroll
        for (int c = 0; c < S::kChunks; ++c)
#pragma unroll
            for (int e = 0; e < kElems; ++e) grad_g[c][e] += d[c][e] * kept[c][e];
        multiply<LOG_N>(d, p.g + first, scale);
        scatter<LOG_N>(d, shared, p.perm + first, first);
        transform<LOG_N>(d, shared);  // d = du, with u = b ⊙ pad(x)
        load_prefix<LOG_N>(v, x + row * p.in_dim, p.in_dim);
#pragma unroll
        for (int c = 0; c < S::kChunks; ++c)
#pragma unroll
            for (int e = 0; e < kElems; ++e) grad_b[c][e] += d[c][e] * v[c][e];
        multiply<LOG_N>(d, p.b + first, 1.0f);
        store_prefix<LOG_N>(dx + (static_cast<int64_t>(j) * p.rows + row) * p.in_dim, p.in_dim, d);
    }
    float* out = partials + (static_cast<int64_t>(blockIdx.x) * 3 * p.blocks + j) * S::kN;
    const int64_t which = static_cast<int64_t>(p.blocks) * S::kN;  // from one gradient to the next
#pragma unroll
    for (int c = 0; c < S::kChunks; ++c) {
        const int i = chunk_start<S::kThreads>(c);
        store8(out + i, grad_b[c]);
        store8(out + which + i, grad_g[c]);
        store8(out + 2 * which + i, grad_s[c]);
    }
}

bool aligned(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

template <typename Kernel>
cudaError_t allow_shared(Kernel kernel, size_t bytes) {
    // Above the default 48 KiB a kernel must opt in.
    if (bytes <= 48 * 1024) return cudaSuccess;
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

template <typename T, int LOG_N>
cudaError_t launch_fwht(const void* in, void* out, int64_t rows, float scale, cudaStream_t stream) {
    using S = Shape<LOG_N>;
    const size_t shared = S::kExchangeFloats * sizeof(float);
    auto kernel = fwht_kernel<T, LOG_N>;
    if (cudaError_t err = allow_shared(kernel, shared); err != cudaSuccess) return err;
    SCALEMAKE_LAUNCH(kernel, dim3(static_cast<unsigned>(rows)), dim3(S::kThreads), shared, stream,
                     static_cast<const T*>(in), static_cast<T*>(out), scale);
    return cudaGetLastError();
}

template <typename T, int LOG_N>
cudaError_t launch_fastfood(const void* x, void* y, const void* dy, void* dx, float* partials, int partial_rows,
                            const ScalemakeFastfood& p, cudaStream_t stream) {
    using S = Shape<LOG_N>;
    const size_t shared = S::kN * sizeof(float);  // a whole row, for the permutation
    const float scale = 1.0f / sqrtf(static_cast<float>(S::kN));
    if (dy == nullptr) {
        auto kernel = fastfood_forward_kernel<T, LOG_N>;
        if (cudaError_t err = allow_shared(kernel, shared); err != cudaSuccess) return err;
        const dim3 grid(static_cast<unsigned>(p.rows), static_cast<unsigned>(p.blocks));
        SCALEMAKE_LAUNCH(kernel, grid, dim3(S::kThreads), shared, stream, static_cast<const T*>(x), static_cast<T*>(y),
                         p, scale);
    } else {
        auto kernel = fastfood_backward_kernel<T, LOG_N>;
        if (cudaError_t err = allow_shared(kernel, shared); err != cudaSuccess) return err;
        const dim3 grid(static_cast<unsigned>(partial_rows), static_cast<unsigned>(p.blocks));
        SCALEMAKE_LAUNCH(kernel, grid, dim3(S::kThreads), shared, stream, static_cast<const T*>(x),
                         static_cast<const T*>(dy), static_cast<T*>(dx), partials, p, scale);
    }
    return cudaGetLastError();
}

// `Launch<T, LOG_N>::run(args…)` for the runtime log_n in [MIN, MAX].
template <template <typename, int> class Launch, typename T, int LOG_N, int MAX, typename... Args>
cudaError_t by_size(int log_n, Args... args) {
    if (log_n == LOG_N) return Launch<T, LOG_N>::run(args...);
    if constexpr (LOG_N < MAX) return by_size<Launch, T, LOG_N + 1, MAX>(log_n, args...);
    return cudaErrorInvalidValue;
}

template <template <typename, int> class Launch, int MAX, typename... Args>
cudaError_t by_type_and_size(int dtype, int log_n, Args... args) {
    switch (dtype) {
        case kScalemakeFloat32:
            return by_size<Launch, float, kScalemakeMinLogN, MAX>(log_n, args...);
        case kScalemakeBFloat16:
            return by_size<Launch, __nv_bfloat16, kScalemakeMinLogN, MAX>(log_n, args...);
        case kScalemakeFloat16:
            return by_size<Launch, __half, kScalemakeMinLogN, MAX>(log_n, args...);
        default:
            return cudaErrorInvalidValue;
    }
}

template <typename T, int LOG_N>
struct FwhtLaunch {
    static cudaError_t run(const void* in, void* out, int64_t rows, float scale, cudaStream_t stream) {
        return launch_fwht<T, LOG_N>(in, out, rows, scale, stream);
    }
};

template <typename T, int LOG_N>
struct FastfoodLaunch {
    static cudaError_t run(const void* x, void* y, const void* dy, void* dx, float* partials, int partial_rows,
                           const ScalemakeFastfood* p, cudaStream_t stream) {
        return launch_fastfood<T, LOG_N>(x, y, dy, dx, partials, partial_rows, *p, stream);
    }
};

bool valid(const ScalemakeFastfood& p) {
    const int n = 1 << p.log_n;
    return p.log_n >= kScalemakeMinLogN && p.log_n <= kScalemakeFastfoodMaxLogN && p.rows > 0 &&
           p.rows <= 0x7fffffff && p.blocks >= 1 && p.blocks <= 65535 && p.in_dim >= 8 && p.in_dim <= n &&
           p.in_dim % kElems == 0 && p.out_dim >= 8 && p.out_dim <= p.blocks * n && p.out_dim % kElems == 0 &&
           aligned(p.b) && aligned(p.g) && aligned(p.s) && aligned(p.bias) && aligned(p.perm);
}

}  // namespace

cudaError_t scalemake_fwht(const void* in, void* out, int64_t rows, int log_n, float scale, int dtype,
                           cudaStream_t stream) {
    if (log_n < kScalemakeMinLogN || log_n > kScalemakeMaxLogN || rows <= 0 || rows > 0x7fffffff || !aligned(in) ||
        !aligned(out))
        return cudaErrorInvalidValue;
    return by_type_and_size<FwhtLaunch, kScalemakeMaxLogN>(dtype, log_n, in, out, rows, scale, stream);
}

cudaError_t scalemake_fastfood_forward(const void* x, void* y, const ScalemakeFastfood& layer, int dtype,
                                       cudaStream_t stream) {
    if (!valid(layer) || !aligned(x) || !aligned(y)) return cudaErrorInvalidValue;
    return by_type_and_size<FastfoodLaunch, kScalemakeFastfoodMaxLogN>(
        dtype, layer.log_n, x, y, static_cast<const void*>(nullptr), static_cast<void*>(nullptr),
        static_cast<float*>(nullptr), 0, &layer, stream);
}

int scalemake_fastfood_partial_rows(int64_t rows) {
    int device = 0, processors = 1;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&processors, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
        processors = 1;
    // A few row groups per processor keep it busy; more only add partial sums to add.
    const int64_t groups = 4 * static_cast<int64_t>(processors);
    return static_cast<int>(rows < groups ? rows : groups);
}

cudaError_t scalemake_fastfood_backward(const void* x, const void* dy, void* dx, float* partials, int partial_rows,
                                        const ScalemakeFastfood& layer, int dtype, cudaStream_t stream) {
    if (!valid(layer) || partial_rows < 1 || !aligned(x) || !aligned(dy) || !aligned(dx) || !aligned(partials))
        return cudaErrorInvalidValue;
    return by_type_and_size<FastfoodLaunch, kScalemakeFastfoodMaxLogN>(dtype, layer.log_n, x,
                                                                       static_cast<void*>(nullptr), dy, dx, partials,
                                                                       partial_rows, &layer, stream);
}
