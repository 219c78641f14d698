// Standalone rates of the CPU tiles' inner loops, one core, no torch:
// which register tile and vector width a core runs the min form at (acc +=
// 2 min(w, x) by FMA: one min and one FMA a MAC) near its peak. The kernels'
// choices per CPU (csrc/cpu: kFwdMR/kFwdNV, half_width_tiles) come from
// numbers like these, checked on whole layers by tools/benchmark_op.py.
//
//   g++ -O3 -o /tmp/cpu_tile_rates tools/cpu_tile_rates.cpp && /tmp/cpu_tile_rates
//
// Prints G MAC/s a core (best of 15 interleaved rounds, so a slow spell of a
// shared host hits every variant) for MR filters (broadcast) x NV vectors of
// positions over a 256-term K block held in L1: 512-bit tiles (AVX-512), and
// 256-bit tiles as the AVX2 build compiles them (16 registers) and as the
// AVX-512 build does (32 registers, EVEX); the input gradient's AVX-512
// tiles with the filter value's broadcast separate or embedded. Also the
// pair rates of min+FMA and min+add (which pipes min shares) and the clock
// of a dependent add chain, to turn rates into MACs a cycle. The pairs and
// the AVX2 tile by adds (min_add_mode: acc += min(w, x)) beside its FMA form
// say which accumulation a core's pipes favour; both run on any AVX2 host.
#include <immintrin.h>
// GCC 12 warns that the intrinsics' undefined pass-through operand is
// uninitialized (as in csrc/cpu).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string_view>
#include <vector>

namespace {

constexpr int K = 256;
alignas(64) float panel[K * 64];
alignas(64) float wts[16 * K];
alignas(64) float out[16 * 64];

#define ZMM_TARGET __attribute__((noinline, target("avx512f,avx512vl,fma")))
#define YMM_TARGET __attribute__((noinline, target("avx2,fma")))

template <int MR, int NV>
ZMM_TARGET void tile_zmm(const float* w, const float* p) {
  __m512 acc[MR][NV] = {};
  const __m512 two = _mm512_set1_ps(2.f);
  for (int k = 0; k < K; ++k) {
    __m512 x[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) x[v] = _mm512_load_ps(p + (k * NV + v) * 16);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 wi = _mm512_set1_ps(w[k * MR + i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        acc[i][v] = _mm512_fmadd_ps(_mm512_min_ps(wi, x[v]), two, acc[i][v]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v)
      _mm512_store_ps(out + (i * NV + v) * 16, acc[i][v]);
}

// The input gradient's tiles (AVX-512, MR rows of one zmm of positions, the
// filter value w[r][i] broadcast, the output-gradient row g[r] a vector):
// the sign rule's fast tile acc += (w > x ? g : 0) and the hardtanh rule's
// acc += g * clamp(w - x, -1, 1) (vrangeps). GCC 12 compiles the broadcast
// as a separate vbroadcastss; the kernels embed it in the compare or
// subtract ({1to16}, one-instruction asm in csrc/cpu), as "emb" does here.
#define ZMM_INLINE \
  __attribute__((always_inline, target("avx512f,avx512vl,avx512dq,fma"))) inline
ZMM_INLINE __mmask16 less_than_broadcast(__m512 x, const float* w) {
  __mmask16 m;
  __asm__("vcmpps $0x11, %1%{1to16%}, %2, %0" : "=k"(m) : "m"(*w), "v"(x));
  return m;
}
ZMM_INLINE __m512 sub_broadcast(__m512 x, const float* w) {
  __m512 d;
  __asm__("vsubps %1%{1to16%}, %2, %0" : "=v"(d) : "m"(*w), "v"(x));
  return d;
}
template <int MR, bool kSign, bool kEmbedded>
__attribute__((noinline, target("avx512f,avx512vl,avx512dq,fma"))) void
input_grad_tile(const float* w, const float* g) {
  __m512 acc[MR], x[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    acc[i] = _mm512_setzero_ps();
    x[i] = _mm512_load_ps(g + 16 * i) * 0.5f;
  }
  const __m512 one = _mm512_set1_ps(1.f);
  for (int k = 0; k < K; ++k) {
    const __m512 gk = _mm512_load_ps(g + k * 16);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const float* wi = w + k * MR + i;
      if (kSign && kEmbedded)
        acc[i] = _mm512_mask_add_ps(acc[i], less_than_broadcast(x[i], wi),
                                    acc[i], gk);
      else if (kSign)
        acc[i] = _mm512_mask_add_ps(
            acc[i], _mm512_cmp_ps_mask(_mm512_set1_ps(*wi), x[i], _CMP_GT_OQ),
            acc[i], gk);
      else if (kEmbedded)
        acc[i] = _mm512_fnmadd_ps(
            gk, _mm512_range_ps(sub_broadcast(x[i], wi), one, 0x2), acc[i]);
      else
        acc[i] = _mm512_fmadd_ps(
            gk, _mm512_range_ps(_mm512_set1_ps(*wi) - x[i], one, 0x2), acc[i]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) _mm512_store_ps(out + i * 16, acc[i]);
}

// The 256-bit tile body, compiled under the caller's target.
#define YMM_TILE_BODY                                                      \
  __m256 acc[MR][NV] = {};                                                 \
  const __m256 two = _mm256_set1_ps(2.f);                                  \
  for (int k = 0; k < K; ++k) {                                            \
    __m256 x[NV];                                                          \
    _Pragma("GCC unroll 4") for (int v = 0; v < NV; ++v) x[v] =            \
        _mm256_load_ps(p + (k * NV + v) * 8);                              \
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; ++i) {                \
      const __m256 wi = _mm256_set1_ps(w[k * MR + i]);                     \
      _Pragma("GCC unroll 4") for (int v = 0; v < NV; ++v) acc[i][v] =     \
          kAdds ? _mm256_add_ps(_mm256_min_ps(wi, x[v]), acc[i][v])       \
                : _mm256_fmadd_ps(_mm256_min_ps(wi, x[v]), two, acc[i][v]);  \
    }                                                                      \
  }                                                                        \
  for (int i = 0; i < MR; ++i)                                             \
    for (int v = 0; v < NV; ++v)                                           \
      _mm256_store_ps(out + (i * NV + v) * 8, acc[i][v]);

// kAdds: the min form by adds (min_form_adds: acc += min(w, x), the sums
// doubled after), the other accumulation the kernels can take.
template <int MR, int NV, bool kAdds = false>
YMM_TARGET void tile_ymm(const float* w, const float* p) {
  YMM_TILE_BODY
}
template <int MR, int NV, bool kAdds = false>
ZMM_TARGET void tile_ymm_evex(const float* w, const float* p) {
  YMM_TILE_BODY
}

// 8 independent pairs a round: t = min(c, c'); acc_i (op)= t. VEX encoding
// and ymm0-15 only, so the pairs run on every AVX2 host (the min_add_mode
// choice matters on AVX2-only cores: Zen 1 and Zen 3); the temporaries are
// reused (renamed), the accumulators are 8 independent chains.
#define PAIRS(MIN, OP)                                                      \
  MIN(8) OP(8, 0) MIN(9) OP(9, 1) MIN(10) OP(10, 2) MIN(11) OP(11, 3)       \
  MIN(12) OP(12, 4) MIN(13) OP(13, 5) MIN(8) OP(8, 6) MIN(9) OP(9, 7)
#define YMIN(t) "vminps %%ymm14, %%ymm15, %%ymm" #t "\n"
#define YFMA(t, c) "vfmadd231ps %%ymm" #t ", %%ymm15, %%ymm" #c "\n"
#define YADD(t, c) "vaddps %%ymm" #t ", %%ymm" #c ", %%ymm" #c "\n"
// Inputs and accumulators start at 0 (no NaN or denormal operands).
#define CLOBBERS                                                           \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",  \
      "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc"
YMM_TARGET void pairs_min_fma(long n) {
  asm volatile("vzeroall\n1:\n" PAIRS(YMIN, YFMA) "dec %0\n jnz 1b\n"
               : "+r"(n) : : CLOBBERS);
}
YMM_TARGET void pairs_min_add(long n) {
  asm volatile("vzeroall\n1:\n" PAIRS(YMIN, YADD) "dec %0\n jnz 1b\n"
               : "+r"(n) : : CLOBBERS);
}
void add_chain(long n) {  // 5 dependent 1-cycle integer ops a round
  asm volatile(
      "1:\n add $1,%%rax\n add $1,%%rax\n add $1,%%rax\n add $1,%%rax\n"
      " sub $4,%%rax\n dec %0\n jnz 1b\n"
      : "+r"(n) : : "rax", "cc");
}

struct Variant {
  const char* name;
  std::function<void()> run;
  double work;  // MACs (or pairs, cycles) a run
  double best = 0;
};

double seconds(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
      .count();
}

}  // namespace

int main() {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512vl");
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    std::puts("cpu_tile_rates: this CPU has no AVX2+FMA");
    return 1;
  }
  for (int i = 0; i < K * 64; ++i) panel[i] = rand() / (float)RAND_MAX;
  for (int i = 0; i < 16 * K; ++i) wts[i] = rand() / (float)RAND_MAX;
  constexpr int kCalls = 20000;
  constexpr long kRounds = 2000000;
  auto tile = [](const char* name, void (*f)(const float*, const float*),
                 int macs) {
    return Variant{name,
                   [f] {
                     for (int n = 0; n < kCalls; ++n) f(wts, panel);
                   },
                   double(kCalls) * macs * K};
  };
  std::vector<Variant> vs = {
      tile("ymm 5x2 (AVX2 build, the kernels' tile)", tile_ymm<5, 2>, 80),
      tile("ymm 4x3 (AVX2 build)", tile_ymm<4, 3>, 96),
      tile("ymm 6x2 (AVX2 build)", tile_ymm<6, 2>, 96),
      tile("ymm 5x2 by adds (AVX2 build, min_add_mode)",
           tile_ymm<5, 2, true>, 80),
  };
  if (avx512) {
    vs.push_back(tile("zmm 5x1 (AVX-512, the kernels' tile)", tile_zmm<5, 1>,
                      80));
    vs.push_back(tile("zmm 8x1", tile_zmm<8, 1>, 128));
    vs.push_back(tile("zmm 5x2", tile_zmm<5, 2>, 160));
    vs.push_back(tile("ymm 5x2 (AVX-512 build: half_width_tiles)",
                      tile_ymm_evex<5, 2>, 80));
    // The forward by filters: positions broadcast, filters in the vectors.
    vs.push_back(tile("zmm 7x2 (AVX-512, the tile by filters)",
                      tile_zmm<7, 2>, 224));
    vs.push_back(tile("ymm 5x4 (AVX-512 build: by filters)",
                      tile_ymm_evex<5, 4>, 160));
  }
  if (avx512 && __builtin_cpu_supports("avx512dq")) {
    vs.push_back(tile("sign fast tile zmm 6x1 (input gradient)",
                      input_grad_tile<6, true, false>, 96));
    vs.push_back(tile("sign fast tile zmm 6x1, emb (the kernels')",
                      input_grad_tile<6, true, true>, 96));
    vs.push_back(tile("hardtanh tile zmm 12x1", input_grad_tile<12, false, false>,
                      192));
    vs.push_back(tile("hardtanh tile zmm 12x1, emb (the kernels')",
                      input_grad_tile<12, false, true>, 192));
  }
  vs.push_back(Variant{"ymm min+FMA pairs", [] { pairs_min_fma(kRounds); },
                       8.0 * kRounds});
  vs.push_back(Variant{"ymm min+add pairs", [] { pairs_min_add(kRounds); },
                       8.0 * kRounds});
  vs.push_back(Variant{"clock (dependent adds)", [] { add_chain(kRounds); },
                       5.0 * kRounds});
  for (int r = 0; r < 15; ++r)
    for (Variant& v : vs) v.best = std::max(v.best, v.work / seconds(v.run));
  const double ghz = vs.back().best / 1e9;
  for (const Variant& v : vs) {
    if (&v == &vs.back())
      std::printf("%-44s %6.2f GHz\n", v.name, ghz);
    else if (std::string_view(v.name).find("pairs") != std::string_view::npos)
      std::printf("%-44s %6.2f G pairs/s  %.2f a cycle\n", v.name,
                  v.best / 1e9, v.best / 1e9 / ghz);
    else
      std::printf("%-44s %6.1f G MAC/s   %.1f MACs a cycle\n", v.name,
                  v.best / 1e9, v.best / 1e9 / ghz);
  }
}
