// Vocab: tokenizer and special tokens of a model.
#pragma once

#include <nanobind/nanobind.h>

#include "model.h"

namespace allama {

class Vocab {
public:
    explicit Vocab(const Model & model) : model_(model.ptr()), vocab_(llama_model_get_vocab(model_.get())) {}

    const llama_vocab * get() const { return vocab_; }
    const ModelPtr & model() const { return model_; }
    int32_t n_tokens() const { return llama_vocab_n_tokens(vocab_); }

    // Raises ValueError unless 0 <= token < n_tokens (llama.cpp would abort).
    void check_token(llama_token token) const;

private:
    ModelPtr model_;  // keeps the vocabulary's memory alive
    const llama_vocab * vocab_;
};

void init_vocab(nanobind::module_ & m);

}  // namespace allama
