// SamplerChain: one request's token sampler (llama.cpp sampler chain), and
// sampling many chains over one decoded batch in a single native call.
#pragma once

#include <nanobind/nanobind.h>

#include "context.h"
#include "model.h"

#include <map>
#include <string>
#include <vector>

namespace allama {

// llama-cpp-python's sampling options, with its defaults, plus llama.cpp's XTC,
// DRY, top-n-sigma and lazy grammars.
struct SamplerParams {
    float temperature = 0.8f;
    int32_t top_k = 40;
    float top_p = 0.95f;
    float min_p = 0.05f;
    float typical_p = 1.0f;
    float repeat_penalty = 1.0f;
    float frequency_penalty = 0.0f;
    float presence_penalty = 0.0f;
    int32_t penalty_last_n = 64;
    int32_t mirostat_mode = 0;
    float mirostat_tau = 5.0f;
    float mirostat_eta = 0.1f;
    int32_t mirostat_m = 100;
    std::map<llama_token, float> logit_bias;
    uint32_t seed = LLAMA_DEFAULT_SEED;
    std::string grammar;
    std::string grammar_root = "root";
    bool grammar_lazy = false;
    std::vector<std::string> grammar_trigger_patterns;
    std::vector<llama_token> grammar_trigger_tokens;
    float xtc_probability = 0.0f;
    float xtc_threshold = 0.1f;
    float top_n_sigma = -1.0f;
    float dry_multiplier = 0.0f;
    float dry_base = 1.75f;
    int32_t dry_allowed_length = 2;
    int32_t dry_penalty_last_n = 0;
    std::vector<std::string> dry_sequence_breakers = {"\n", ":", "\"", "*"};
    int32_t min_keep = 1;
};

class SamplerChain {
public:
    SamplerChain(const Model & model, const SamplerParams & params);
    SamplerChain(ModelPtr model, llama_sampler * chain, int32_t n_vocab, bool has_grammar, int32_t leading_top_k,
                 bool only_greedy);
    ~SamplerChain();
    SamplerChain(const SamplerChain &) = delete;
    SamplerChain & operator=(const SamplerChain &) = delete;

    // Samples from a row of logits and accepts the token. Needs no GIL.
    llama_token sample_row(const float * logits);
    void accept(llama_token token);
    void reset();
    SamplerChain * clone() const;
    int32_t n_vocab() const { return n_vocab_; }
    llama_sampler * get() const { return chain_; }

private:
    ModelPtr model_;
    llama_sampler * chain_ = nullptr;
    int32_t n_vocab_ = 0;
    bool has_grammar_ = false;
    // k of a top-k sampler that comes first in the chain (0: none): sample_row then hands the
    // chain only the k best candidates (select_top_k), which top-k would have kept anyway.
    int32_t leading_top_k_ = 0;
    // The chain is only llama.cpp's greedy sampler: sample_row takes the first largest logit
    // itself (what greedy picks) without building a candidate array of the whole vocabulary.
    bool only_greedy_ = false;
    std::vector<llama_token_data> candidates_;
};

void init_sampler(nanobind::module_ & m);

}  // namespace allama
