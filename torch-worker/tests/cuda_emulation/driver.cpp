// Runs hadamard.cu's kernels under emulate_cuda.h and checks them against
// double-precision references: the transform at every size and element
// type, and the fused FastFood layer forward and backward (whose reference
// gradients are themselves checked by the adjoint identities of a map linear
// in each of x, b, g and s). Prints one line per case; exits 1 on the first
// case out of tolerance. Built and run by tests/cuda_emulation.rs.

#include "emulate_cuda.h"

#include "../../src/model/variants/hadamard.cu"

#include <algorithm>
#include <random>
#include <string>

namespace {

template <typename T>
struct Type;
template <>
struct Type<float> {
    static constexpr int kCode = kScalemakeFloat32;
    static constexpr const char* kName = "fp32";
    static constexpr double kTolerance = 1e-6;  // the normalised transform of unit normals
    static float store(float v) { return v; }
    static float load(float v) { return v; }
};
template <>
struct Type<__nv_bfloat16> {
    static constexpr int kCode = kScalemakeBFloat16;
    static constexpr const char* kName = "bf16";
    static constexpr double kTolerance = 5e-2;  // 8 bits of mantissa
    static __nv_bfloat16 store(float v) { return __float2bfloat16(v); }
    static float load(__nv_bfloat16 v) { return __bfloat162float(v); }
};
template <>
struct Type<__half> {
    static constexpr int kCode = kScalemakeFloat16;
    static constexpr const char* kName = "fp16";
    static constexpr double kTolerance = 1e-2;  // 11 bits of mantissa
    static __half store(float v) { return __float2half(v); }
    static float load(__half v) { return __half2float(v); }
};

std::mt19937 rng(12345);

std::vector<float> normals(size_t count, double std = 1.0) {
    std::normal_distribution<float> normal(0.0f, float(std));
    std::vector<float> v(count);
    for (float& x : v) x = normal(rng);
    return v;
}

// The values as element type T (rounded), and back as doubles.
template <typename T>
std::vector<T> stored(const std::vector<float>& v) {
    std::vector<T> out(v.size());
    std::transform(v.begin(), v.end(), out.begin(), Type<T>::store);
    return out;
}
template <typename T>
std::vector<double> loaded(const std::vector<T>& v) {
    std::vector<double> out(v.size());
    std::transform(v.begin(), v.end(), out.begin(), [](T x) { return double(Type<T>::load(x)); });
    return out;
}

// In place, unnormalised, over `n` elements at p.
void fwht(double* p, int n) {
    for (int h = 1; h < n; h <<= 1)
        for (int i = 0; i < n; i += 2 * h)
            for (int k = i; k < i + h; ++k) {
                const double a = p[k], b = p[k + h];
                p[k] = a + b;
                p[k + h] = a - b;
            }
}

double max_error(const std::vector<double>& got, const std::vector<double>& want) {
    double worst = 0.0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
    return worst;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
    double sum = 0.0;
    for (size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
    return sum;
}

int failures = 0;

void report(const std::string& what, double error, double tolerance) {
    const bool ok = error <= tolerance;
    std::printf("%s %s: max error %.2e (tolerance %.1e)\n", ok ? "ok  " : "FAIL", what.c_str(), error, tolerance);
    failures += !ok;
}

template <typename T>
void check_transform(int log_n, int64_t rows, bool normalised) {
    const int n = 1 << log_n;
    const auto in = stored<T>(normals(rows * n));
    std::vector<T> out(rows * n);
    const double scale = normalised ? 1.0 / std::sqrt(double(n)) : 1.0;
    const cudaError_t err = scalemake_fwht(in.data(), out.data(), rows, log_n, float(scale), Type<T>::kCode, nullptr);
    if (err != cudaSuccess) {
        std::printf("FAIL fwht %s n=%d: launch refused (%d)\n", Type<T>::kName, n, err);
        ++failures;
        return;
    }
    auto want = loaded(in);
    for (int64_t r = 0; r < rows; ++r) fwht(want.data() + r * n, n);
    for (double& w : want) w *= scale;
    // Unnormalised outputs grow like √n.
    const double tolerance = Type<T>::kTolerance * (normalised ? 1.0 : std::sqrt(double(n)));
    report(std::string("fwht ") + Type<T>::kName + " n=" + std::to_string(n) + (normalised ? "" : " unnormalised"),
           max_error(loaded(out), want), tolerance);
}

// The layer in double, and its gradients by the chain rule.
struct Reference {
    int n, blocks, in_dim, out_dim;
    int64_t rows;
    std::vector<double> b, g, s, bias;
    std::vector<int32_t> perm;

    std::vector<double> forward(const std::vector<double>& x) const {
        std::vector<double> y(rows * out_dim);
        std::vector<double> a(n), q(n);
        const double scale = 1.0 / std::sqrt(double(n));
        for (int64_t r = 0; r < rows; ++r)
            for (int j = 0; j < blocks; ++j) {
                for (int i = 0; i < n; ++i) a[i] = i < in_dim ? x[r * in_dim + i] * b[j * n + i] : 0.0;
                fwht(a.data(), n);
                for (int i = 0; i < n; ++i) q[i] = g[j * n + i] * a[perm[j * n + i]] * scale;
                fwht(q.data(), n);
                for (int i = 0; i < n && j * n + i < out_dim; ++i)
                    y[r * out_dim + j * n + i] = s[j * n + i] * q[i] * scale + bias[j * n + i];
            }
        return y;
    }

    // Gradients of Σ dy ⊙ y: x, b, g, s.
    std::array<std::vector<double>, 4> backward(const std::vector<double>& x, const std::vector<double>& dy) const {
        std::vector<double> dx(rows * in_dim, 0.0), db(blocks * n, 0.0), dg(blocks * n, 0.0), ds(blocks * n, 0.0);
        std::vector<double> a(n), p(n), q(n), d(n), da(n);
        const double scale = 1.0 / std::sqrt(double(n));
        for (int64_t r = 0; r < rows; ++r)
            for (int j = 0; j < blocks; ++j) {
                const int o = j * n;
                for (int i = 0; i < n; ++i) a[i] = i < in_dim ? x[r * in_dim + i] * b[o + i] : 0.0;
                fwht(a.data(), n);
                for (int i = 0; i < n; ++i) p[i] = a[perm[o + i]] * scale;
                for (int i = 0; i < n; ++i) q[i] = g[o + i] * p[i];
                fwht(q.data(), n);  // r = q · scale
                for (int i = 0; i < n; ++i) {
                    const double dyi = o + i < out_dim ? dy[r * out_dim + o + i] : 0.0;
                    ds[o + i] += dyi * q[i] * scale;
                    d[i] = dyi * s[o + i] * scale;
                }
                fwht(d.data(), n);  // dq
                for (int i = 0; i < n; ++i) {
                    dg[o + i] += d[i] * p[i];
                    da[perm[o + i]] = d[i] * g[o + i] * scale;
                }
                fwht(da.data(), n);  // du
                for (int i = 0; i < in_dim; ++i) {
                    db[o + i] += da[i] * x[r * in_dim + i];
                    dx[r * in_dim + i] += da[i] * b[o + i];
                }
            }
        return {dx, db, dg, ds};
    }
};

template <typename T>
void check_fastfood(int in_dim, int out_dim, int64_t rows) {
    int n = 1;
    while (n < in_dim) n <<= 1;
    int log_n = 0;
    while ((1 << log_n) < n) ++log_n;
    const int blocks = (out_dim + n - 1) / n;
    Reference ref{n, blocks, in_dim, out_dim, rows};
    std::vector<float> b(blocks * n), g = normals(blocks * n), s = normals(blocks * n), bias = normals(out_dim, 0.1);
    std::bernoulli_distribution coin;
    for (float& v : b) v = coin(rng) ? 1.0f : -1.0f;
    ref.perm.resize(blocks * n);
    for (int j = 0; j < blocks; ++j) {
        auto first = ref.perm.begin() + j * n;
        for (int i = 0; i < n; ++i) first[i] = i;
        std::shuffle(first, first + n, rng);
    }
    ref.b.assign(b.begin(), b.end()), ref.g.assign(g.begin(), g.end());
    ref.s.assign(s.begin(), s.end()), ref.bias.assign(bias.begin(), bias.end());
    const auto x = stored<T>(normals(rows * in_dim));
    const auto dy = stored<T>(normals(rows * out_dim));
    // The kernel takes the layer's permutation of its stacked features, as the worker stores it.
    std::vector<int32_t> stacked(ref.perm);
    for (int j = 0; j < blocks; ++j)
        for (int i = 0; i < n; ++i) stacked[j * n + i] += j * n;
    const ScalemakeFastfood layer{b.data(), g.data(), s.data(), bias.data(), stacked.data(), rows, in_dim, out_dim,
                                  blocks, log_n};
    const std::string name = std::string("fastfood ") + Type<T>::kName + " " + std::to_string(in_dim) + "→" +
                             std::to_string(out_dim) + " (n=" + std::to_string(n) + ", " + std::to_string(blocks) +
                             " blocks)";

    std::vector<T> y(rows * out_dim);
    if (scalemake_fastfood_forward(x.data(), y.data(), layer, Type<T>::kCode, nullptr) != cudaSuccess) {
        std::printf("FAIL %s: forward launch refused\n", name.c_str());
        ++failures;
        return;
    }
    const auto xd = loaded(x), dyd = loaded(dy);
    const auto want = ref.forward(xd);
    // Outputs and dx are stored in T; the parameter gradients are sums in fp32.
    const double stored_tolerance = Type<T>::kCode == kScalemakeFloat32 ? 1e-5 : Type<T>::kTolerance;
    report(name + " forward", max_error(loaded(y), want), stored_tolerance);

    const int groups = scalemake_fastfood_partial_rows(rows);
    std::vector<T> dx_parts(blocks * rows * in_dim);
    std::vector<float> partials(size_t(groups) * 3 * blocks * n, NAN);
    if (scalemake_fastfood_backward(x.data(), dy.data(), dx_parts.data(), partials.data(), groups, layer,
                                    Type<T>::kCode, nullptr) != cudaSuccess) {
        std::printf("FAIL %s: backward launch refused\n", name.c_str());
        ++failures;
        return;
    }
    std::vector<double> dx(rows * in_dim, 0.0);
    for (int j = 0; j < blocks; ++j)
        for (int64_t i = 0; i < rows * in_dim; ++i) dx[i] += Type<T>::load(dx_parts[j * rows * in_dim + i]);
    std::array<std::vector<double>, 3> grads;  // b, g, s
    for (int w = 0; w < 3; ++w) {
        grads[w].assign(blocks * n, 0.0);
        for (int k = 0; k < groups; ++k)
            for (int i = 0; i < blocks * n; ++i) grads[w][i] += partials[(size_t(k) * 3 + w) * blocks * n + i];
    }
    const auto [rdx, rdb, rdg, rds] = ref.backward(xd, dyd);

    // The reference, by adjointness: y − bias is linear in x, and in each of b, g and s.
    std::vector<double> linear = want;
    for (int64_t r = 0; r < rows; ++r)
        for (int o = 0; o < out_dim; ++o) linear[r * out_dim + o] -= ref.bias[o];
    const double total = dot(dyd, linear);
    const double identity = std::max({std::abs(dot(rdx, xd) - total), std::abs(dot(rdb, ref.b) - total),
                                      std::abs(dot(rdg, ref.g) - total), std::abs(dot(rds, ref.s) - total)});
    report(name + " reference gradients' adjoint identities", identity / std::max(1.0, std::abs(total)), 1e-9);

    // Gradients sum over rows: their scale grows like √rows.
    const double tolerance = 1e-5 * std::sqrt(double(rows));
    report(name + " backward dx", max_error(dx, rdx), stored_tolerance);
    report(name + " backward db", max_error(grads[0], rdb), tolerance);
    report(name + " backward dg", max_error(grads[1], rdg), tolerance);
    report(name + " backward ds", max_error(grads[2], rds), tolerance);
}

void check_refusals() {
    // The host side refuses what the kernels cannot do, before any launch.
    std::vector<float> buffer(1 << 16);
    const bool ok = scalemake_fwht(buffer.data(), buffer.data(), 1, 7, 1.0f, kScalemakeFloat32, nullptr) != cudaSuccess &&
                    scalemake_fwht(buffer.data(), buffer.data(), 1, 16, 1.0f, kScalemakeFloat32, nullptr) != cudaSuccess &&
                    scalemake_fwht(buffer.data(), buffer.data(), 0, 10, 1.0f, kScalemakeFloat32, nullptr) != cudaSuccess &&
                    scalemake_fwht(buffer.data() + 1, buffer.data(), 1, 10, 1.0f, kScalemakeFloat32, nullptr) != cudaSuccess &&
                    scalemake_fwht(buffer.data(), buffer.data(), 1, 10, 1.0f, 7, nullptr) != cudaSuccess;
    std::vector<int32_t> perm(1 << 14);
    const ScalemakeFastfood too_wide{buffer.data(), buffer.data(), buffer.data(), buffer.data(), perm.data(), 1,
                                     16384, 16384, 1, 14};
    const ScalemakeFastfood ragged{buffer.data(), buffer.data(), buffer.data(), buffer.data(), perm.data(), 1,
                                   1020, 1024, 1, 10};
    const bool fastfood_ok =
        scalemake_fastfood_forward(buffer.data(), buffer.data(), too_wide, kScalemakeFloat32, nullptr) != cudaSuccess &&
        scalemake_fastfood_forward(buffer.data(), buffer.data(), ragged, kScalemakeFloat32, nullptr) != cudaSuccess;
    std::printf("%s refusals: sizes outside 2^8…2^15, no rows, misaligned data, unknown types, FastFood past 2^13 "
                "or widths not a multiple of 8\n",
                ok && fastfood_ok ? "ok  " : "FAIL");
    failures += !(ok && fastfood_ok);
}

}  // namespace

int main() {
    check_refusals();
    for (int log_n = kScalemakeMinLogN; log_n <= kScalemakeMaxLogN; ++log_n) {
        const int64_t rows = log_n <= 12 ? 3 : 1;
        check_transform<float>(log_n, rows, true);
        check_transform<__nv_bfloat16>(log_n, rows, true);
        check_transform<__half>(log_n, rows, true);
    }
    check_transform<float>(11, 2, false);
    check_fastfood<float>(192, 640, 11);   // n = 256, padded input, 3 blocks, narrowed output
    check_fastfood<float>(512, 2048, 5);   // n = 512: 2 warps
    check_fastfood<float>(768, 3072, 11);  // small's fc: n = 1024, 3 blocks
    check_fastfood<float>(3072, 768, 3);   // small's proj: n = 4096, 1 block, 768 of 4096 outputs
    check_fastfood<float>(6144, 1536, 2);  // n = 8192
    check_fastfood<__nv_bfloat16>(768, 3072, 5);
    check_fastfood<__nv_bfloat16>(3072, 768, 2);
    check_fastfood<__half>(512, 1024, 3);
    std::printf("%s\n", failures == 0 ? "all cases within tolerance" : "some cases out of tolerance");
    return failures == 0 ? 0 : 1;
}
