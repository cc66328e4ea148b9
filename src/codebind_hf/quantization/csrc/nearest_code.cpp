// Nearest codevector (max dot product) of each row, with a certificate that the choice is unambiguous.
//
// Scores of a block of rows against a tile of 16 codes live in registers: every code tile is loaded once per
// row block, each row keeps per-lane running best / second-best scores and the best's code, and no score is
// ever written to memory. A row whose best and second-best scores lie within `tol * |row| + tol_abs` gets -1
// instead of an index, so the caller can settle it with the reference computation (rounding here differs
// from BLAS).
//
// Plain C ABI, no torch headers (fast to build); GCC/Clang vector extensions, so -march picks the ISA.
#include <cmath>
#include <cstdint>

namespace {

constexpr int kLanes = 16;
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline vf splat(float x) { return vf{} + x; }
inline vi splat_i(int32_t x) { return vi{} + x; }
// Unaligned load: callers' buffers need not be vector-aligned.
inline vf load(const float* p) {
  vf v;
  __builtin_memcpy(&v, p, sizeof(vf));
  return v;
}

// `codes_t` is (d, k_padded) with k_padded a multiple of kLanes; `bias` (k_padded) is 0 for real codes and
// -inf for padding, so padded lanes never win.
template <int D, int RB>
void block(const float* rows, int d_runtime, const float* codes_t, const float* bias, int64_t k_padded,
           float tol, float tol_abs, int64_t* out) {
  const int d = D > 0 ? D : d_runtime;
  vf best[RB], second[RB];
  vi arg[RB];
  for (int r = 0; r < RB; ++r) {
    best[r] = splat(-INFINITY);
    second[r] = splat(-INFINITY);
    arg[r] = splat_i(0);
  }
  vi lane;
  for (int l = 0; l < kLanes; ++l) lane[l] = l;
  for (int64_t k0 = 0; k0 < k_padded; k0 += kLanes) {
    const vf b = load(bias + k0);
    vf acc[RB];
    for (int r = 0; r < RB; ++r) acc[r] = b;
    for (int j = 0; j < d; ++j) {
      const vf c = load(codes_t + j * k_padded + k0);
      for (int r = 0; r < RB; ++r) acc[r] += splat(rows[r * d + j]) * c;
    }
    const vi kv = lane + static_cast<int32_t>(k0);
    for (int r = 0; r < RB; ++r) {
      const vf s = acc[r];
      const vi gt = s > best[r];
      const vf low = gt ? best[r] : s;  // min(best, s): what may become the second best
      second[r] = low > second[r] ? low : second[r];
      best[r] = gt ? s : best[r];
      arg[r] = gt ? kv : arg[r];
    }
  }
  for (int r = 0; r < RB; ++r) {
    float top = -INFINITY;
    int32_t top_arg = 0;
    int top_lane = 0;
    for (int l = 0; l < kLanes; ++l) {
      if (best[r][l] > top) {
        top = best[r][l];
        top_arg = arg[r][l];
        top_lane = l;
      }
    }
    float runner = -INFINITY;
    for (int l = 0; l < kLanes; ++l) {
      runner = second[r][l] > runner ? second[r][l] : runner;
      if (l != top_lane && best[r][l] > runner) runner = best[r][l];
    }
    float norm2 = 0.0f;
    for (int j = 0; j < d; ++j) norm2 += rows[r * d + j] * rows[r * d + j];
    // Not (gap > bound): a NaN score or bound also sends the row to the reference.
    out[r] = (top - runner > tol * std::sqrt(norm2) + tol_abs) ? top_arg : -1;
  }
}

template <int D>
void run(const float* rows, int64_t n, int d, const float* codes_t, const float* bias, int64_t k_padded, float tol,
         float tol_abs, int64_t* out) {
  constexpr int RB = 4;
  int64_t i = 0;
  for (; i + RB <= n; i += RB) block<D, RB>(rows + i * d, d, codes_t, bias, k_padded, tol, tol_abs, out + i);
  for (; i < n; ++i) block<D, 1>(rows + i * d, d, codes_t, bias, k_padded, tol, tol_abs, out + i);
}

}  // namespace

extern "C" {

// rows: (n, d) float32 row-major; codes_t: (d, k_padded) float32; bias: (k_padded,); out: (n,) int64.
// A row is certified when best - runner-up > tol * |row| + tol_abs; otherwise its index is -1.
int codebind_nearest_code(const float* rows, int64_t n, int32_t d, const float* codes_t, const float* bias,
                          int64_t k_padded, float tol, float tol_abs, int64_t* out) {
  if (n < 0 || d < 1 || k_padded < kLanes || k_padded % kLanes) return 1;
  if (d == 8) {
    run<8>(rows, n, d, codes_t, bias, k_padded, tol, tol_abs, out);
  } else {
    run<0>(rows, n, d, codes_t, bias, k_padded, tol, tol_abs, out);
  }
  return 0;
}

int codebind_nearest_code_lanes() { return kLanes; }

}  // extern "C"
