#include "core/fused_norm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/norm.h"

// CMakeLists.txt compiles this file with -O3 -ffp-contract=off -fno-trapping-math: vectorised loops
// (the clamps and the NaN select are branches GCC will not turn into vector selects while it must
// keep floating-point traps), and no fused multiply-adds in one build that the others lack.

namespace iidm {
using torch::Tensor;

namespace {

#define IIDM_INLINE __attribute__((always_inline)) inline

IIDM_INLINE float bf16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even, as c10::BFloat16 does (NaN stays a quiet NaN).
IIDM_INLINE uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint16_t rounded = static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
  return f != f ? uint16_t{0x7FC0} : rounded;
}

IIDM_INLINE float load(const float* p, int64_t i) { return p[i]; }
IIDM_INLINE float load(const uint16_t* p, int64_t i) { return bf16_to_float(p[i]); }
IIDM_INLINE void store(float* p, int64_t i, float v) { p[i] = v; }
IIDM_INLINE void store(uint16_t* p, int64_t i, float v) { p[i] = float_to_bf16(v); }

// exp(x) by Cephes' expf (range reduction by ln 2, a degree-6 polynomial, 2^n from the exponent
// bits): within 2 ulp of the true value, written in operations every vector unit has, so that each
// build of the loops rounds the same way. The range is limited on the integer exponent, not on x:
// a float clamp of x is a branch that GCC splits into a constant path, whose v / (1 + e^87) made
// denormals on every element (5 ms for a 3M-element SiLU instead of 1). Below e^-87 the result is 0,
// above e^88 infinity (SiLU's v / (1 + inf) is then -0, as it should be); |x| beyond 1.5e9 is not
// handled.
IIDM_INLINE float exp_vectorizable(float x) {
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float n = (x * 1.44269504088896341f + magic) - magic;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = (p * (r * r) + r) + 1.0f;
  // 2^n: biased exponent 0 gives 0 (x < -87.3), 255 infinity (x > 88.7).
  const int32_t exponent = std::min(std::max(static_cast<int32_t>(n), -127), 128) + 127;
  const uint32_t bits = static_cast<uint32_t>(exponent) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

IIDM_INLINE float silu(float v) { return v / (1.0f + exp_vectorizable(-v)); }

// Per-channel sums and sums of squares of `rows` rows of C values, added to sum / squares (float64).
template <class X>
IIDM_INLINE void accumulate_rows_t(const X* x, int64_t rows, int64_t C, double* sum, double* squares) {
  for (int64_t r = 0; r < rows; ++r, x += C)
    for (int64_t c = 0; c < C; ++c) {
      const double v = load(x, c);
      sum[c] += v;
      squares[c] += v * v;
    }
}

IIDM_INLINE void accumulate_rows(const void* x, bool bf16, int64_t rows, int64_t C, double* sum, double* squares) {
  if (bf16)
    accumulate_rows_t(static_cast<const uint16_t*>(x), rows, C, sum, squares);
  else
    accumulate_rows_t(static_cast<const float*>(x), rows, C, sum, squares);
}

IIDM_INLINE void add_rows(const double* partial, int64_t rows, int64_t C, double* total) {
  for (int64_t r = 0; r < rows; ++r, partial += C)
    for (int64_t c = 0; c < C; ++c) total[c] += partial[c];
}

// What the element-wise pass over one image's rows needs.
struct ApplyArgs {
  const void* x;
  void* out;
  int64_t rows, C;
  const float *a, *b;                 // the normalisation as x * a + b, per channel
  const void *scale_map, *shift_map;  // [rows, C] or null
  const float *scale, *shift;         // [C] or null
};

template <class X, class S, bool kSpatial, bool kChannel>
IIDM_INLINE void apply_rows_t(const ApplyArgs& p) {
  const X* x = static_cast<const X*>(p.x);
  X* out = static_cast<X*>(p.out);
  const S* scale_map = static_cast<const S*>(p.scale_map);
  const S* shift_map = static_cast<const S*>(p.shift_map);
  const int64_t C = p.C;
  for (int64_t r = 0; r < p.rows; ++r) {
    const int64_t o = r * C;
    for (int64_t c = 0; c < C; ++c) {
      float v = load(x, o + c) * p.a[c] + p.b[c];
      if (kSpatial) v = v * load(scale_map, o + c) + load(shift_map, o + c);
      if (kChannel) v = v * p.scale[c] + p.shift[c];
      store(out, o + c, silu(v));
    }
  }
}

template <class X, class S>
IIDM_INLINE void apply_rows_x(const ApplyArgs& p) {
  if (p.scale_map)
    p.scale ? apply_rows_t<X, S, true, true>(p) : apply_rows_t<X, S, true, false>(p);
  else
    p.scale ? apply_rows_t<X, S, false, true>(p) : apply_rows_t<X, S, false, false>(p);
}

IIDM_INLINE void apply_rows(const ApplyArgs& p, bool x_bf16, bool map_bf16) {
  if (x_bf16)
    map_bf16 ? apply_rows_x<uint16_t, uint16_t>(p) : apply_rows_x<uint16_t, float>(p);
  else
    map_bf16 ? apply_rows_x<float, uint16_t>(p) : apply_rows_x<float, float>(p);
}

// The loops built for AVX-512 (with its 16-bit lanes, for bf16), AVX2 and baseline x86-64, the
// inline bodies above compiled into each; the CPU picks one at the first call.
struct Kernels {
  void (*accumulate_rows)(const void*, bool, int64_t, int64_t, double*, double*);
  void (*add_rows)(const double*, int64_t, int64_t, double*);
  void (*apply_rows)(const ApplyArgs&, bool, bool);
};

#define IIDM_KERNELS(name, target)                                                                                   \
  target void accumulate_rows_##name(const void* x, bool bf16, int64_t rows, int64_t C, double* sum, double* sq) {   \
    accumulate_rows(x, bf16, rows, C, sum, sq);                                                                      \
  }                                                                                                                  \
  target void add_rows_##name(const double* partial, int64_t rows, int64_t C, double* total) {                       \
    add_rows(partial, rows, C, total);                                                                               \
  }                                                                                                                  \
  target void apply_rows_##name(const ApplyArgs& p, bool x_bf16, bool map_bf16) { apply_rows(p, x_bf16, map_bf16); } \
  constexpr Kernels kKernels_##name{accumulate_rows_##name, add_rows_##name, apply_rows_##name};

IIDM_KERNELS(generic, )
#if defined(__x86_64__) && defined(__GNUC__)
IIDM_KERNELS(avx2, __attribute__((target("avx2"))))
IIDM_KERNELS(avx512, __attribute__((target("avx512f,avx512bw"))))
#endif

const Kernels& kernels() {
  static const Kernels chosen = [] {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return kKernels_avx512;
    if (__builtin_cpu_supports("avx2")) return kKernels_avx2;
#endif
    return kKernels_generic;
  }();
  return chosen;
}

bool fusable_dtype(const Tensor& t) {
  return t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kBFloat16;
}

// A spatial map the kernel can read as [N or 1, H, W, C] rows.
bool readable_map(const Tensor& m, const Tensor& x) {
  return m.defined() && m.device() == x.device() && fusable_dtype(m) && m.dim() == 4 &&
         (m.size(0) == x.size(0) || m.size(0) == 1) && m.size(1) == x.size(1) && m.size(2) == x.size(2) &&
         m.size(3) == x.size(3) && m.is_contiguous(torch::MemoryFormat::ChannelsLast);
}

// Per-channel factors as [N, C] float32 (broadcast over the batch when given once).
Tensor channel_factors(const Tensor& t, int64_t N, int64_t C) {
  return t.to(torch::kCPU, torch::kFloat32).reshape({-1, C}).expand({N, C}).contiguous();
}

constexpr int64_t kChunkRows = 128;  // positions summed per partial: fixed, so sums do not depend on threads

std::atomic<bool>& fused_norm_switch() {
  static std::atomic<bool> enabled([] {
    const char* v = std::getenv("IIDM_FUSED_NORM");
    return !(v && std::string(v) == "0");
  }());
  return enabled;
}

}  // namespace

bool fused_norm_enabled() { return fused_norm_switch().load(); }
void set_fused_norm(bool enabled) { fused_norm_switch().store(enabled); }

Tensor fused_group_norm_silu(const torch::nn::GroupNormImpl& norm, const Tensor& x, const Modulation& spatial,
                             const Modulation& channel) {
  if (!fused_norm_enabled() || torch::GradMode::is_enabled() || group_norm_statistics_shared() ||
      !x.device().is_cpu() || x.dim() != 4 || !fusable_dtype(x) || !x.is_contiguous(torch::MemoryFormat::ChannelsLast))
    return {};
  if (spatial.defined() &&
      !(readable_map(spatial.scale, x) && readable_map(spatial.shift, x) &&
        spatial.scale.scalar_type() == spatial.shift.scalar_type() && spatial.scale.size(0) == spatial.shift.size(0)))
    return {};
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), HW = H * W;
  const int64_t G = norm.options.num_groups(), per_group = C / G;
  if (channel.defined() && (channel.scale.numel() % C || channel.shift.numel() % C ||
                            (channel.scale.numel() != C && channel.scale.numel() != N * C) ||
                            (channel.shift.numel() != C && channel.shift.numel() != N * C)))
    return {};
  const bool x_bf16 = x.scalar_type() == torch::kBFloat16;
  const int64_t element = x_bf16 ? 2 : 4;
  const char* xdata = static_cast<const char*>(x.data_ptr());

  // 1. Per-channel sums over fixed chunks of positions, then added in chunk order.
  const int64_t chunks = (HW + kChunkRows - 1) / kChunkRows;
  std::vector<double> partial(static_cast<size_t>(N * chunks * 2 * C), 0.0);
  at::parallel_for(0, N * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t n = k / chunks, first = (k % chunks) * kChunkRows, rows = std::min(kChunkRows, HW - first);
      double* sums = partial.data() + k * 2 * C;
      kernels().accumulate_rows(xdata + (n * HW + first) * C * element, x_bf16, rows, C, sums, sums + C);
    }
  });

  // 2. Per image and group: mean and 1/std, folded with the affine weights into x * a + b.
  const Tensor weight = norm.weight.defined() ? norm.weight.to(torch::kCPU, torch::kFloat64).contiguous() : Tensor();
  const Tensor bias = norm.bias.defined() ? norm.bias.to(torch::kCPU, torch::kFloat64).contiguous() : Tensor();
  std::vector<float> a(static_cast<size_t>(N * C)), b(static_cast<size_t>(N * C));
  std::vector<double> total(static_cast<size_t>(2 * C));
  const double eps = norm.options.eps(), count = static_cast<double>(per_group * HW);
  for (int64_t n = 0; n < N; ++n) {
    std::fill(total.begin(), total.end(), 0.0);
    kernels().add_rows(partial.data() + n * chunks * 2 * C, chunks, 2 * C, total.data());
    for (int64_t g = 0; g < G; ++g) {
      double s = 0, s2 = 0;
      for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c) {
        s += total[c];
        s2 += total[C + c];
      }
      const double mean = s / count, var = std::max(s2 / count - mean * mean, 0.0);
      const double inv_std = 1.0 / std::sqrt(var + eps);
      for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c) {
        const double w = weight.defined() ? weight.data_ptr<double>()[c] : 1.0;
        const double shift = bias.defined() ? bias.data_ptr<double>()[c] : 0.0;
        a[n * C + c] = static_cast<float>(inv_std * w);
        b[n * C + c] = static_cast<float>(shift - mean * inv_std * w);
      }
    }
  }

  // 3. One element-wise pass: normalise, modulate, SiLU, round once.
  Tensor out = torch::empty_like(x, x.options(), torch::MemoryFormat::ChannelsLast);
  Tensor channel_scale, channel_shift;
  if (channel.defined()) {
    channel_scale = channel_factors(channel.scale, N, C);
    channel_shift = channel_factors(channel.shift, N, C);
  }
  const bool map_bf16 = spatial.defined() && spatial.scale.scalar_type() == torch::kBFloat16;
  const int64_t map_element = map_bf16 ? 2 : 4;
  char* odata = static_cast<char*>(out.data_ptr());
  const int64_t grain = std::max<int64_t>(1, 32768 / C);  // rows per task
  at::parallel_for(0, N * HW, grain, [&](int64_t begin, int64_t end) {
    int64_t row = begin;
    while (row < end) {  // within one image at a time: its own a, b and factors
      const int64_t n = row / HW, rows = std::min(end, (n + 1) * HW) - row;
      ApplyArgs p{};
      p.x = xdata + row * C * element;
      p.out = odata + row * C * element;
      p.rows = rows;
      p.C = C;
      p.a = a.data() + n * C;
      p.b = b.data() + n * C;
      if (spatial.defined()) {
        const int64_t map_row = spatial.scale.size(0) == 1 ? row - n * HW : row;
        p.scale_map = static_cast<const char*>(spatial.scale.data_ptr()) + map_row * C * map_element;
        p.shift_map = static_cast<const char*>(spatial.shift.data_ptr()) + map_row * C * map_element;
      }
      if (channel.defined()) {
        p.scale = channel_scale.data_ptr<float>() + n * C;
        p.shift = channel_shift.data_ptr<float>() + n * C;
      }
      kernels().apply_rows(p, x_bf16, map_bf16);
      row += rows;
    }
  });
  return out;
}

}  // namespace iidm
