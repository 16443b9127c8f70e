#include "best_logits.h"

#include <algorithm>
#include <cmath>

namespace allama {

namespace {

constexpr int32_t kLanes = 8;   // one AVX register of floats
constexpr int32_t kBlock = 64;  // logits summarised by one maximum

// Descending logit, then ascending id: the candidates' order after top-k.
bool stronger(const llama_token_data & a, const llama_token_data & b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// The largest logit of logits[0, kBlock), NaN ignored (-inf for a block of NaNs). Written as
// an element-wise maximum over lanes so that the compiler emits vector max instructions.
float block_max(const float * logits) {
    float most[kLanes];
    for (int32_t j = 0; j < kLanes; ++j) {
        most[j] = -INFINITY;
    }
    for (int32_t r = 0; r < kBlock / kLanes; ++r) {
        for (int32_t j = 0; j < kLanes; ++j) {
            const float x = logits[r * kLanes + j];
            most[j] = x > most[j] ? x : most[j];
        }
    }
    float m = most[0];
    for (int32_t j = 1; j < kLanes; ++j) {
        m = most[j] > m ? most[j] : m;
    }
    return m;
}

}  // namespace

void select_top_k(const float * logits, int32_t n, int32_t k, std::vector<llama_token_data> & out) {
    out.clear();
    const int32_t n_blocks = n / kBlock;
    // The k-th largest block maximum is a lower bound of the k-th largest logit (the k largest
    // maxima are k distinct logits), so only the blocks whose maximum reaches it can hold a
    // winner, and only their logits at or above it.
    float threshold = -INFINITY;
    if (n_blocks >= k) {
        thread_local std::vector<float> maxima;
        maxima.resize(static_cast<size_t>(n_blocks));
        for (int32_t b = 0; b < n_blocks; ++b) {
            maxima[b] = block_max(logits + static_cast<size_t>(b) * kBlock);
        }
        thread_local std::vector<float> order;
        order.assign(maxima.begin(), maxima.end());
        std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), std::greater<float>());
        threshold = order[k - 1];
        for (int32_t b = 0; b < n_blocks; ++b) {
            if (maxima[b] >= threshold) {
                for (int32_t t = b * kBlock; t < (b + 1) * kBlock; ++t) {
                    if (logits[t] >= threshold) {
                        out.push_back(llama_token_data{t, logits[t], 0.0f});
                    }
                }
            }
        }
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
    std::partial_sort(out.begin(), out.begin() + keep, out.end(), stronger);
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
    for (int32_t b = 0; b < n_blocks; ++b) {
        // a block whose maximum is not above the best so far cannot change it (equal: an earlier
        // index wins; NaN: never above)
        if (block_max(logits + static_cast<size_t>(b) * kBlock) > best_logit) {
            scan(b * kBlock, (b + 1) * kBlock);
        }
    }
    scan(n_blocks * kBlock, n);
    return best;
}

}  // namespace allama
