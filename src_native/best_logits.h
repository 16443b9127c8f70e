#pragma once

#include "llama.h"

#include <cstdint>
#include <vector>

namespace allama {

// Fast selections of the best logits, for samplers that need only those.

// The `k` largest of `n` logits as candidates, in descending order of logit (equal logits:
// the smaller token id first), for a sampler chain that starts with top-k. It reads the
// logits once and writes only the k winners, where filling a candidate array of the whole
// vocabulary and partially sorting it costs several times more on every sampled token.
// Requires 0 < k < n. NaN logits are never chosen.
void select_top_k(const float * logits, int32_t n, int32_t k, std::vector<llama_token_data> & out);

// The first index of the largest of `n` logits, exactly as llama.cpp's greedy sampler scans
// (a NaN is never picked, except at index 0, which nothing then beats), but skipping whole
// blocks that hold nothing larger. Requires n > 0.
llama_token first_argmax(const float * logits, int32_t n);

}  // namespace allama
