// Just enough of CUDA to run hadamard.cu's kernels on the CPU, for tests on
// machines without a GPU (tests/cuda_emulation.rs). Each block runs alone;
// its threads are fibers (ucontext) that run in turn up to the next barrier.
// __syncthreads is such a barrier, and so is each half of a warp shuffle
// (every thread writes its value, then every thread reads its partner's):
// block-wide, which is stricter than CUDA and right for kernels whose
// threads all reach the same barriers, as these do. A thread that ends
// while others wait at a barrier is a bug in the kernel; the emulator aborts.

#pragma once

#define SCALEMAKE_EMULATE_CUDA 1

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x = 1, unsigned y = 1, unsigned z = 1) : x(x), y(y), z(z) {}
};
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) int4 { int x, y, z, w; };

typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorInvalidValue = 1;
typedef void* cudaStream_t;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount };
template <typename F>
cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) { return cudaSuccess; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* device) { *device = 0; return cudaSuccess; }
// Two "processors": the backward pass then splits rows into a few groups, as on a GPU.
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr, int) { *value = 2; return cudaSuccess; }

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct __nv_bfloat16 { uint16_t bits; };
struct __half { _Float16 value; };
inline float __bfloat162float(__nv_bfloat16 h) {
    uint32_t u = uint32_t(h.bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline __nv_bfloat16 __float2bfloat16(float f) {  // round to nearest even, as CUDA's
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if (std::isnan(f)) return {0x7fc0};
    u += 0x7fffu + ((u >> 16) & 1u);
    return {uint16_t(u >> 16)};
}
inline float __half2float(__half h) { return float(h.value); }
inline __half __float2half(float f) { return {_Float16(f)}; }

namespace scalemake_emulation {

struct Block {
    std::vector<ucontext_t> contexts;
    std::vector<std::vector<char>> stacks;
    std::vector<bool> done;
    ucontext_t scheduler;
    unsigned current = 0;
    std::vector<float4> shared;
    std::vector<float> slots;  // one per thread, for shuffles
    std::function<void()> body;
};

inline dim3 thread_index, block_index, block_dim, grid_dim;
inline Block* block = nullptr;

inline void barrier() { swapcontext(&block->contexts[block->current], &block->scheduler); }

inline float shfl_xor(float value, int mask) {
    const unsigned t = thread_index.x;
    block->slots[t] = value;
    barrier();
    const float other = block->slots[t ^ unsigned(mask)];
    barrier();
    return other;
}

inline void thread_main() {
    block->body();
    block->done[block->current] = true;
}

// Runs every thread of `b` to completion, a barrier at a time.
inline void run(Block& b, unsigned threads) {
    constexpr size_t kStack = 256 * 1024;
    b.contexts.resize(threads);
    b.stacks.resize(threads);
    b.done.assign(threads, false);
    for (unsigned t = 0; t < threads; ++t) {
        b.stacks[t].resize(kStack);
        getcontext(&b.contexts[t]);
        b.contexts[t].uc_stack.ss_sp = b.stacks[t].data();
        b.contexts[t].uc_stack.ss_size = kStack;
        b.contexts[t].uc_link = &b.scheduler;
        makecontext(&b.contexts[t], thread_main, 0);
    }
    block = &b;
    for (;;) {
        unsigned finished = 0;
        for (unsigned t = 0; t < threads; ++t) {
            b.current = t;
            thread_index = dim3(t);
            swapcontext(&b.scheduler, &b.contexts[t]);
            finished += b.done[t];
        }
        if (finished == threads) break;
        if (finished != 0) {
            std::fprintf(stderr, "emulated CUDA: %u of %u threads ended while the others wait at a barrier\n",
                         finished, threads);
            std::abort();
        }
    }
    block = nullptr;
}

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 threads, size_t shared_bytes, cudaStream_t, Args... args) {
    grid_dim = grid;
    block_dim = threads;
    for (unsigned y = 0; y < grid.y; ++y)
        for (unsigned x = 0; x < grid.x; ++x) {
            Block b;
            b.shared.assign(shared_bytes / sizeof(float4) + 1, float4{NAN, NAN, NAN, NAN});
            b.slots.assign(threads.x, 0.0f);
            b.body = [&] { kernel(args...); };
            block_index = dim3(x, y);
            run(b, threads.x);
        }
}

}  // namespace scalemake_emulation

#define threadIdx scalemake_emulation::thread_index
#define blockIdx scalemake_emulation::block_index
#define blockDim scalemake_emulation::block_dim
#define gridDim scalemake_emulation::grid_dim
#define __syncthreads() scalemake_emulation::barrier()
#define __shfl_xor_sync(mask, value, lane_mask) scalemake_emulation::shfl_xor(value, lane_mask)
#define SCALEMAKE_LAUNCH(kernel, grid, threads, shared, stream, ...) \
    scalemake_emulation::launch(kernel, grid, threads, shared, stream, __VA_ARGS__)
#define SCALEMAKE_SHARED_FLOATS(name) \
    float* name = reinterpret_cast<float*>(scalemake_emulation::block->shared.data())
