// The entry points of hadamard.cu, for its autograd shim (hadamard_shim.cpp)
// and for the CPU emulation test (tests/cuda_emulation/driver.cpp).

#pragma once

#include <stdint.h>
#ifndef SCALEMAKE_EMULATE_CUDA
#include <cuda_runtime.h>
#endif

// Element types of the tensors the kernels read and write (arithmetic is fp32).
enum ScalemakeDtype : int { kScalemakeFloat32 = 0, kScalemakeBFloat16 = 1, kScalemakeFloat16 = 2 };

// Smallest and largest transform sizes, as log2: 256 … 32,768 features.
constexpr int kScalemakeMinLogN = 8;
constexpr int kScalemakeMaxLogN = 15;
// Largest n of the fused FastFood layer: its row, the diagonals' part of it
// and the gradients' accumulators stay in registers and shared memory.
constexpr int kScalemakeFastfoodMaxLogN = 13;

// out = scale · in·H_n for `rows` contiguous rows of n = 2^log_n elements
// (16-byte aligned). H is symmetric, so this is also its own backward.
cudaError_t scalemake_fwht(const void* in, void* out, int64_t rows, int log_n, float scale, int dtype,
                           cudaStream_t stream);

// One Adaptive FastFood layer, y = [S_j·H·G_j·Π_j·H·B_j·pad(x)]_j, narrowed
// to out_dim, + bias, with H normalised, j over `blocks` stacked blocks of
// n = 2^log_n. x is (rows, in_dim) and y (rows, out_dim), in `dtype`, rows
// contiguous and 16-byte aligned; in_dim ≤ n and out_dim ≤ blocks·n are
// multiples of 8. b, g, s are (blocks, n) fp32; bias (out_dim) fp32; perm
// (blocks, n) int32, the layer's permutation of its stacked features as the
// tensor operations apply it: output j·n + i takes feature perm[j·n + i],
// which lies in block j.
struct ScalemakeFastfood {
    const float* b;
    const float* g;
    const float* s;
    const float* bias;
    const int32_t* perm;
    int64_t rows;
    int in_dim;
    int out_dim;
    int blocks;
    int log_n;
};

cudaError_t scalemake_fastfood_forward(const void* x, void* y, const ScalemakeFastfood& layer, int dtype,
                                       cudaStream_t stream);

// How many row groups the backward pass splits the rows into on the current
// device: one set of partial parameter gradients per group.
int scalemake_fastfood_partial_rows(int64_t rows);

// The backward pass of scalemake_fastfood_forward (recomputing its
// intermediate values from x). dy is (rows, out_dim); dx receives
// (blocks, rows, in_dim), each block's share of the input gradient, to be
// summed (blocks = 1: the gradient itself); partials receives
// (partial_rows, 3, blocks, n) fp32, the gradients of b, g and s summed over
// each row group, to be summed over groups. The bias gradient is dy's column
// sum, left to the caller.
cudaError_t scalemake_fastfood_backward(const void* x, const void* dy, void* dx, float* partials, int partial_rows,
                                        const ScalemakeFastfood& layer, int dtype, cudaStream_t stream);
