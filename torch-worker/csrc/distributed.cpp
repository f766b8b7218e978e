// Data-parallel training's collectives through libtorch's own c10d: a
// TCPStore for the rendezvous, ProcessGroupGloo on the CPU and
// ProcessGroupNCCL on CUDA. tch 0.24 wraps none of it, so this shim does,
// behind a few C entry points. Every C++ exception becomes an error
// message, never an abort across the FFI boundary, and every collective
// waits at most the group's timeout.
//
// Built with -DUSE_C10D_GLOO when gloo's headers are at hand (the torch
// wheel ships c10d's but not gloo's; scripts/setup.sh unpacks Debian's
// libgloo-dev for them), and -DUSE_C10D_NCCL when NCCL's are (the wheel's
// nvidia-nccl package). The library code itself is the wheel's.

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

namespace {

void set_error(char* error, size_t error_len, const char* what) {
    if (error != nullptr && error_len > 0) std::snprintf(error, error_len, "%s", what);
}

// One rank's membership of the group.
struct Group {
    c10::intrusive_ptr<c10d::Store> store;
    c10::intrusive_ptr<c10d::Backend> backend;
    std::chrono::milliseconds timeout;
};

template <typename F>
int guarded(char* error, size_t error_len, F&& body) {
    try {
        body();
        return 0;
    } catch (const c10::Error& e) {
        set_error(error, error_len, e.what_without_backtrace());
    } catch (const std::exception& e) {
        set_error(error, error_len, e.what());
    }
    return -1;
}

}  // namespace

// Which backends this build has: bit 0 gloo, bit 1 NCCL.
extern "C" int scalemake_dist_backends() {
    int backends = 0;
#ifdef USE_C10D_GLOO
    backends |= 1;
#endif
#ifdef USE_C10D_NCCL
    backends |= 2;
#endif
    return backends;
}

// Joins the group of `world` ranks that meets at host:port (rank 0 serves
// the store there) with `backend` "gloo" or "nccl". Waits at most
// `timeout_ms` for the others, and every later collective as long. Null
// with the reason in `error`.
extern "C" void* scalemake_dist_init(const char* host, int port, int rank, int world, const char* backend, long timeout_ms,
                                     char* error, size_t error_len) {
    Group* group = nullptr;
    const int rc = guarded(error, error_len, [&] {
        const std::chrono::milliseconds timeout(timeout_ms);
        c10d::TCPStoreOptions options;
        options.port = static_cast<std::uint16_t>(port);
        options.isServer = rank == 0;
        options.numWorkers = world;
        options.waitWorkers = true;
        options.timeout = timeout;
        auto tcp = c10::make_intrusive<c10d::TCPStore>(host, options);
        // A prefix per backend, as torch.distributed does, so a store
        // could host more than one group.
        auto store = c10::make_intrusive<c10d::PrefixStore>(std::string("scalemake/") + backend, tcp);
        c10::intrusive_ptr<c10d::Backend> made;
        const std::string name(backend);
        if (name == "gloo") {
#ifdef USE_C10D_GLOO
            made = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world,
                                                                c10d::ProcessGroupGloo::Options::create_default(timeout));
#else
            throw std::runtime_error("this build of scalemake-torch has no gloo (its headers were missing at build time)");
#endif
        } else if (name == "nccl") {
#ifdef USE_C10D_NCCL
            auto nccl = c10d::ProcessGroupNCCL::Options::create();
            nccl->timeout = timeout;
            made = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, nccl);
#else
            throw std::runtime_error("this build of scalemake-torch has no NCCL (its headers were missing at build time)");
#endif
        } else {
            throw std::runtime_error("unknown backend `" + name + "`: gloo or nccl");
        }
        group = new Group{store, made, timeout};
    });
    return rc == 0 ? group : nullptr;
}

extern "C" void scalemake_dist_free(void* group) { delete static_cast<Group*>(group); }

// Sums `tensor` over the ranks, in place, and waits (at most the timeout).
extern "C" int scalemake_dist_all_reduce_sum(void* group, const at::Tensor* tensor, char* error, size_t error_len) {
    return guarded(error, error_len, [&] {
        auto* g = static_cast<Group*>(group);
        std::vector<at::Tensor> tensors{*tensor};
        c10d::AllreduceOptions options;
        options.reduceOp = c10d::ReduceOp::SUM;
        options.timeout = g->timeout;
        auto work = g->backend->allreduce(tensors, options);
        if (!work->wait(g->timeout)) throw std::runtime_error("all-reduce timed out");
    });
}

// Rank `root`'s `tensor` into every rank's, in place.
extern "C" int scalemake_dist_broadcast(void* group, const at::Tensor* tensor, int root, char* error, size_t error_len) {
    return guarded(error, error_len, [&] {
        auto* g = static_cast<Group*>(group);
        std::vector<at::Tensor> tensors{*tensor};
        c10d::BroadcastOptions options;
        options.rootRank = root;
        options.timeout = g->timeout;
        auto work = g->backend->broadcast(tensors, options);
        if (!work->wait(g->timeout)) throw std::runtime_error("broadcast timed out");
    });
}
