#pragma once

#include "llama.h"

#include <cstdint>
#include <vector>

namespace allama {

// The `k` largest of `n` logits as candidates, in descending order of logit (equal logits:
// the smaller token id first), for a sampler chain that starts with top-k. It reads the
// logits once and writes only the k winners, where filling a candidate array of the whole
// vocabulary and partially sorting it costs several times more on every sampled token.
// Requires 0 < k < n. NaN logits are never chosen.
void select_top_k(const float * logits, int32_t n, int32_t k, std::vector<llama_token_data> & out);

}  // namespace allama
