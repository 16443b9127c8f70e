#include "best_logits.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace allama {

namespace {

constexpr int32_t kBlock = 64;  // logits summarised by one maximum

// Eight floats in one vector register (GCC and Clang vector extensions: AVX registers where
// the CPU has them, pairs of SSE or NEON registers elsewhere).
typedef float Lanes __attribute__((vector_size(32)));
typedef float HalfLanes __attribute__((vector_size(16)));
typedef int32_t IntLanes __attribute__((vector_size(32)));
typedef int32_t HalfIntLanes __attribute__((vector_size(16)));
constexpr int32_t kLanes = 8;

// The row scan is compiled for several x86 levels and picked at load time (a portable wheel
// still gets AVX-512 or AVX2 where the CPU has it); elsewhere, for the target's baseline.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define ALLAMA_ROW_SCAN __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define ALLAMA_ROW_SCAN
#endif

// The helpers below are inlined into each compiled version of the scans (so that each uses its
// own registers; the 32-byte-vector ABI note GCC gives for them does not apply).
#pragma GCC diagnostic ignored "-Wpsabi"
#define ALLAMA_LANES_INLINE inline __attribute__((always_inline))

// Element-wise maximum that keeps `most` where x is NaN (x > most is false then).
ALLAMA_LANES_INLINE Lanes lanes_max(Lanes x, Lanes most) {
#if defined(__GNUC__) && !defined(__clang__)
    return x > most ? x : most;  // one (v)maxps, whose NaN rule is exactly this
#else
    // (a select written with masks: Clang takes `?:` on vectors only in recent versions)
    const IntLanes take = x > most;
    return reinterpret_cast<Lanes>((reinterpret_cast<IntLanes>(x) & take) | (reinterpret_cast<IntLanes>(most) & ~take));
#endif
}

ALLAMA_LANES_INLINE Lanes load_lanes(const float * p) {
    Lanes v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

ALLAMA_LANES_INLINE float horizontal_max(Lanes v) {
    HalfLanes lo;
    HalfLanes hi;
    std::memcpy(&lo, &v, sizeof(lo));
    std::memcpy(&hi, reinterpret_cast<const char *>(&v) + sizeof(lo), sizeof(hi));
#if defined(__GNUC__) && !defined(__clang__)
    const HalfLanes m = hi > lo ? hi : lo;
#else
    const HalfIntLanes take = hi > lo;
    const HalfLanes m = reinterpret_cast<HalfLanes>((reinterpret_cast<HalfIntLanes>(hi) & take) |
                                                    (reinterpret_cast<HalfIntLanes>(lo) & ~take));
#endif
    const float a = m[1] > m[0] ? m[1] : m[0];
    const float b = m[3] > m[2] ? m[3] : m[2];
    return b > a ? b : a;
}

// Whether any lane is set (halves OR-ed as vectors, then two 64-bit words: a few
// instructions where testing the eight lanes one by one takes fifteen).
ALLAMA_LANES_INLINE bool any_lane(IntLanes v) {
    HalfIntLanes lo;
    HalfIntLanes hi;
    std::memcpy(&lo, &v, sizeof(lo));
    std::memcpy(&hi, reinterpret_cast<const char *>(&v) + sizeof(lo), sizeof(hi));
    const HalfIntLanes both = lo | hi;
    uint64_t words[2];
    std::memcpy(words, &both, sizeof(words));
    return (words[0] | words[1]) != 0;
}

// maxima[b] = the largest logit of block b (NaN ignored; -inf for a block of NaNs).
ALLAMA_ROW_SCAN
void block_maxima(const float * logits, int32_t n_blocks, float * maxima) {
    for (int32_t b = 0; b < n_blocks; ++b) {
        const float * p = logits + static_cast<size_t>(b) * kBlock;
        Lanes m0 = lanes_max(load_lanes(p), Lanes{} - INFINITY);
        Lanes m1 = lanes_max(load_lanes(p + kLanes), Lanes{} - INFINITY);
        for (int32_t r = 2; r < kBlock / kLanes; r += 2) {
            m0 = lanes_max(load_lanes(p + r * kLanes), m0);
            m1 = lanes_max(load_lanes(p + (r + 1) * kLanes), m1);
        }
        maxima[b] = horizontal_max(lanes_max(m1, m0));
    }
}

// Appends the logits at least `threshold` of the blocks whose maximum reaches it, eight at
// a time: most groups of eight hold none.
ALLAMA_ROW_SCAN
void collect_at_least(const float * logits, const float * maxima, int32_t n_blocks, float threshold,
                      std::vector<llama_token_data> & out) {
    const Lanes bound = Lanes{} + threshold;
    for (int32_t b = 0; b < n_blocks; ++b) {
        if (!(maxima[b] >= threshold)) {
            continue;
        }
        for (int32_t g = b * kBlock; g < (b + 1) * kBlock; g += kLanes) {
            const IntLanes hits = load_lanes(logits + g) >= bound;
            if (!any_lane(hits)) {
                continue;
            }
            for (int32_t t = g; t < g + kLanes; ++t) {
                if (logits[t] >= threshold) {
                    out.push_back(llama_token_data{t, logits[t], 0.0f});
                }
            }
        }
    }
}

// Descending logit, then ascending id: the candidates' order after top-k.
bool stronger(const llama_token_data & a, const llama_token_data & b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// A float's bits as an unsigned key in the same order (for non-NaN floats).
inline uint32_t order_key(float x) {
    uint32_t u;
    std::memcpy(&u, &x, sizeof(u));
    return (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
}

inline float from_order_key(uint32_t key) {
    const uint32_t u = (key & 0x80000000u) != 0 ? (key & 0x7fffffffu) : ~key;
    float x;
    std::memcpy(&x, &u, sizeof(x));
    return x;
}

// A lower bound of the k-th largest of v[0, n) (none NaN; 0 < k <= n), within 1/128 of it:
// the smallest float that shares the top 16 bits of its key, found by a radix selection on
// those two bytes, with counts instead of comparisons (std::nth_element's data-dependent
// branches mispredict on about every other element).
float kth_largest_bound(const float * v, int32_t n, int32_t k) {
    thread_local std::vector<uint32_t> keys;
    keys.resize(static_cast<size_t>(n));
    for (int32_t i = 0; i < n; ++i) {
        keys[i] = order_key(v[i]);
    }
    uint32_t prefix = 0;
    uint32_t known = 0;  // the bits of the answer found so far
    int32_t rank = k;    // its rank among the keys that share them
    for (int shift = 24; shift >= 16; shift -= 8) {
        // Four interleaved histograms: block maxima mostly share their top byte, and
        // increments of one counter in a row would wait on each other's store.
        int32_t counts[4][256] = {};
        int32_t i = 0;
        for (; i + 4 <= n; i += 4) {
            for (int32_t j = 0; j < 4; ++j) {
                counts[j][(keys[i + j] >> shift) & 0xffu] += (keys[i + j] & known) == prefix;
            }
        }
        for (; i < n; ++i) {
            counts[0][(keys[i] >> shift) & 0xffu] += (keys[i] & known) == prefix;
        }
        int32_t count[256];
        for (int32_t d = 0; d < 256; ++d) {
            count[d] = counts[0][d] + counts[1][d] + counts[2][d] + counts[3][d];
        }
        int32_t digit = 255;
        for (; digit > 0 && count[digit] < rank; --digit) {
            rank -= count[digit];
        }
        prefix |= static_cast<uint32_t>(digit) << shift;
        known |= 0xffu << shift;
    }
    // (below -inf's key lie negative NaNs: the bound is then -inf itself)
    return from_order_key(std::max(prefix, order_key(-INFINITY)));
}

std::vector<float> & maxima_buffer(int32_t n_blocks) {
    thread_local std::vector<float> maxima;
    maxima.resize(static_cast<size_t>(n_blocks));
    return maxima;
}

}  // namespace

void select_top_k(const float * logits, int32_t n, int32_t k, std::vector<llama_token_data> & out) {
    out.clear();
    const int32_t n_blocks = n / kBlock;
    // The k-th largest block maximum is a lower bound of the k-th largest logit (the k largest
    // maxima are k distinct logits), and so is anything below it: only the blocks whose maximum
    // reaches the bound can hold a winner, and only their logits at or above it.
    float threshold = -INFINITY;
    if (n_blocks >= k) {
        std::vector<float> & maxima = maxima_buffer(n_blocks);
        block_maxima(logits, n_blocks, maxima.data());
        threshold = kth_largest_bound(maxima.data(), n_blocks, k);
        collect_at_least(logits, maxima.data(), n_blocks, threshold, out);
    } else {
        for (int32_t t = 0; t < n_blocks * kBlock; ++t) {
            if (!std::isnan(logits[t])) {
                out.push_back(llama_token_data{t, logits[t], 0.0f});
            }
        }
    }
    for (int32_t t = n_blocks * kBlock; t < n; ++t) {
        if (logits[t] >= threshold) {  // (false for NaN)
            out.push_back(llama_token_data{t, logits[t], 0.0f});
        }
    }
    const size_t keep = std::min(out.size(), static_cast<size_t>(k));
    // (a lambda, not the function itself: the sort then inlines the comparison)
    std::partial_sort(out.begin(), out.begin() + keep, out.end(),
                      [](const llama_token_data & a, const llama_token_data & b) { return stronger(a, b); });
    out.resize(keep);
}

llama_token first_argmax(const float * logits, int32_t n) {
    llama_token best = 0;
    float best_logit = logits[0];
    auto scan = [&](int32_t from, int32_t to) {
        for (int32_t t = from; t < to; ++t) {
            if (logits[t] > best_logit) {
                best = t;
                best_logit = logits[t];
            }
        }
    };
    const int32_t n_blocks = n / kBlock;
    std::vector<float> & maxima = maxima_buffer(n_blocks);
    block_maxima(logits, n_blocks, maxima.data());
    for (int32_t b = 0; b < n_blocks; ++b) {
        // a block whose maximum is not above the best so far cannot change it (equal: an earlier
        // index wins; NaN: never above)
        if (maxima[b] > best_logit) {
            scan(b * kBlock, (b + 1) * kBlock);
        }
    }
    scan(n_blocks * kBlock, n);
    return best;
}

}  // namespace allama
