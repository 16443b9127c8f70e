// Batch: a reusable llama_batch of tokens (or of input embeddings) with a fixed capacity.
#pragma once

#include <nanobind/nanobind.h>

#include "llama.h"

#include <atomic>
#include <vector>

namespace allama {

class Context;

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

// BatchExt: llama.cpp's extended batch (llama_batch_ext) for one Context. It mirrors what
// llama.cpp keeps per entry (content kind, position set, output flag) so that llama_process
// can be refused before llama.cpp would abort or misread an entry.
class BatchExt {
public:
    BatchExt(Context & ctx, nanobind::object ctx_ref);
    ~BatchExt();
    BatchExt(const BatchExt &) = delete;
    BatchExt & operator=(const BatchExt &) = delete;

    struct Entry {
        bool has_token = false;
        bool has_embd = false;
        bool pos_set = false;
        bool output = false;
    };

    // llama_batch_ext_free; later use raises ValueError.
    void free();
    bool freed() const { return batch_ == nullptr; }
    void clear();
    // The C functions' results: a batch index, or -1 (full), -2 (bad token or embedding), -3 (bad seq id).
    int32_t add(llama_seq_id seq_id);
    int32_t add_token(llama_seq_id seq_id, llama_token id);
    int32_t add_embd(llama_seq_id seq_id, const float * data, size_t n_rows, size_t n_embd);
    bool add_seq(int32_t idx, llama_seq_id seq_id);
    bool set_embd_token(int32_t idx, const float * data, size_t n_rows, size_t n_embd);
    bool set_embd_state(int32_t idx, const float * data, size_t n_rows, size_t n_embd);
    bool set_output(int32_t idx, bool value);
    // Raises ValueError for a negative position or too few of them (M-RoPE embedding entries take 4).
    bool set_pos(int32_t idx, const std::vector<llama_pos> & pos);
    // How many positions set_pos reads for entry idx (1, or 4 for an M-RoPE embedding entry); 0: no such entry.
    size_t positions_needed(int32_t idx) const;

    // Raises ValueError unless the batch can be handed to llama_process(type) on `ctx` (lock held).
    void check_ready(const Context & ctx, llama_context * raw, int32_t type) const;
    llama_batch_ext * get() const;
    const Context * context() const { return ctx_; }
    const std::vector<Entry> & entries() const { return entries_; }
    int32_t capacity() const { return capacity_; }
    int32_t n_seq_max() const { return n_seq_max_; }
    // Guards against changes from another thread while llama_process reads the batch.
    void set_busy(bool busy) { busy_.store(busy); }

private:
    llama_batch_ext * live() const;  // raises if freed or busy
    bool valid_idx(int32_t idx) const { return idx >= 0 && static_cast<size_t>(idx) < entries_.size(); }

    llama_batch_ext * batch_ = nullptr;
    Context * ctx_;
    nanobind::object ctx_ref_;  // keeps the Context (which the batch's memory pointer belongs to) alive
    std::vector<Entry> entries_;
    int32_t capacity_ = 0;
    int32_t n_seq_max_ = 0;
    int32_t n_pos_per_embd_ = 1;
    std::atomic<bool> busy_{false};
};

void init_batch(nanobind::module_ & m);

}  // namespace allama
