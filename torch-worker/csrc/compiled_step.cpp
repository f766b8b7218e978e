// AOTInductor packages (`.pt2`, made by torch-worker/python/compile_step.py)
// run from Rust: tch 0.24 does not wrap torch::inductor's package loader,
// so this shim does, behind three C entry points. Every C++ exception
// becomes an error message, never an abort across the FFI boundary.

#include <ATen/ATen.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace {
void set_error(char* error, size_t error_len, const char* what) {
    if (error != nullptr && error_len > 0) std::snprintf(error, error_len, "%s", what);
}
}  // namespace

// Loads the package at `path` for device index `device_index` (-1: the
// package's own device, or the CPU). Null with the reason in `error`.
extern "C" void* scalemake_package_load(const char* path, int device_index, char* error, size_t error_len) {
    try {
        return new torch::inductor::AOTIModelPackageLoader(path, "model", false, 1, static_cast<c10::DeviceIndex>(device_index));
    } catch (const c10::Error& e) {
        set_error(error, error_len, e.what_without_backtrace());
        return nullptr;
    } catch (const std::exception& e) {
        set_error(error, error_len, e.what());
        return nullptr;
    }
}

extern "C" void scalemake_package_free(void* loader) {
    delete static_cast<torch::inductor::AOTIModelPackageLoader*>(loader);
}

// Runs the package on `n_inputs` tensors and stores up to `max_outputs`
// new tensors (owned by the caller, as tch's `Tensor::from_ptr` expects) in
// `outputs`. Returns the number of outputs, or -1 with the reason in `error`.
extern "C" long scalemake_package_run(void* loader, const at::Tensor* const* inputs, size_t n_inputs, at::Tensor** outputs,
                                      size_t max_outputs, char* error, size_t error_len) {
    try {
        std::vector<at::Tensor> args;
        args.reserve(n_inputs);
        for (size_t i = 0; i < n_inputs; ++i) args.push_back(*inputs[i]);
        std::vector<at::Tensor> results = static_cast<torch::inductor::AOTIModelPackageLoader*>(loader)->run(args);
        if (results.size() > max_outputs) {
            set_error(error, error_len, ("the package returned " + std::to_string(results.size()) + " outputs, expected at most " + std::to_string(max_outputs)).c_str());
            return -1;
        }
        for (size_t i = 0; i < results.size(); ++i) outputs[i] = new at::Tensor(std::move(results[i]));
        return static_cast<long>(results.size());
    } catch (const c10::Error& e) {
        set_error(error, error_len, e.what_without_backtrace());
        return -1;
    } catch (const std::exception& e) {
        set_error(error, error_len, e.what());
        return -1;
    }
}
