// Batch: a reusable llama_batch of tokens (or of input embeddings) with a fixed capacity.
#pragma once

#include <nanobind/nanobind.h>

#include "llama.h"

#include <vector>

namespace allama {

class Batch {
public:
    // `embd` > 0 makes a batch of input embedding rows of that width instead of token ids.
    Batch(int32_t capacity, int32_t n_seq_max, int32_t embd);
    ~Batch();
    Batch(const Batch &) = delete;
    Batch & operator=(const Batch &) = delete;

    void add_token(llama_token token, llama_pos pos, const std::vector<llama_seq_id> & seq_ids, bool output);
    void add_tokens(const std::vector<llama_token> & tokens, llama_pos pos0, llama_seq_id seq_id, bool output_last);
    void add_embeddings(const float * rows, size_t n_rows, llama_pos pos0, llama_seq_id seq_id, bool output_last);
    // Replaces the contents with `n_tokens` entries of C-layout arrays (the low-level
    // API's llama_batch fields); `token` or `embd` is null for the other kind of batch,
    // `seq_id` has `seq_stride` ids per token.
    void assign(int32_t n_tokens, const llama_token * token, const float * embd, const llama_pos * pos,
                const int32_t * n_seq_id, const llama_seq_id * seq_id, size_t seq_stride, const int8_t * logits);
    void clear() { batch_.n_tokens = 0; }
    void set_output(int32_t i, bool output);

    const llama_batch & raw() const { return batch_; }
    int32_t n_tokens() const { return batch_.n_tokens; }
    int32_t capacity() const { return capacity_; }
    int32_t n_seq_max() const { return n_seq_max_; }
    int32_t embd() const { return embd_; }

private:
    void check_room(size_t n) const;
    void check_seq_ids(const std::vector<llama_seq_id> & seq_ids) const;
    void put(int32_t i, llama_pos pos, const llama_seq_id * seq_ids, int32_t n_seq, bool output);

    llama_batch batch_;
    int32_t capacity_;
    int32_t n_seq_max_;
    int32_t embd_;
};

void init_batch(nanobind::module_ & m);

}  // namespace allama
