// The CUDA caching allocator's peak of allocated bytes, for benchmarks'
// "peak memory" (tch exposes no allocator statistics). Built with the CUDA
// kernels, where the toolkit's headers are at hand.

#include <c10/cuda/CUDACachingAllocator.h>

#include <exception>

// The peak bytes allocated on `device` since the last reset, or -1.
extern "C" int64_t scalemake_cuda_peak_allocated(int device) {
    try {
        const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
        return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
    } catch (const std::exception&) {
        return -1;
    }
}

// Starts a new peak on `device`; false if the allocator refused.
extern "C" bool scalemake_cuda_reset_peak(int device) {
    try {
        c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
        return true;
    } catch (const std::exception&) {
        return false;
    }
}
