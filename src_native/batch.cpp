#include "batch.h"

#include "context.h"

#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <string>

namespace nb = nanobind;

namespace allama {

Batch::Batch(int32_t capacity, int32_t n_seq_max, int32_t embd)
    : capacity_(capacity), n_seq_max_(n_seq_max), embd_(embd) {
    if (capacity < 1) {
        throw nb::value_error("batch capacity must be at least 1");
    }
    if (n_seq_max < 1 || n_seq_max > static_cast<int32_t>(llama_max_parallel_sequences())) {
        throw nb::value_error(("n_seq_max must be in [1, " + std::to_string(llama_max_parallel_sequences()) + "]").c_str());
    }
    if (embd < 0) {
        throw nb::value_error("embd must be >= 0");
    }
    batch_ = llama_batch_init(capacity, embd, n_seq_max);
    batch_.n_tokens = 0;
}

Batch::~Batch() { llama_batch_free(batch_); }

void Batch::check_room(size_t n) const {
    if (static_cast<size_t>(batch_.n_tokens) + n > static_cast<size_t>(capacity_)) {
        throw nb::value_error(("batch is full: " + std::to_string(batch_.n_tokens) + " + " + std::to_string(n) +
                               " tokens exceed its capacity of " + std::to_string(capacity_)).c_str());
    }
}

void Batch::check_seq_ids(const std::vector<llama_seq_id> & seq_ids) const {
    if (seq_ids.empty() || seq_ids.size() > static_cast<size_t>(n_seq_max_)) {
        throw nb::value_error(("a token needs 1 to " + std::to_string(n_seq_max_) + " sequence ids in this batch").c_str());
    }
    for (llama_seq_id s : seq_ids) {
        if (s < 0) {
            throw nb::value_error(("sequence id " + std::to_string(s) + " is negative").c_str());
        }
    }
}

void Batch::put(int32_t i, llama_pos pos, const llama_seq_id * seq_ids, int32_t n_seq, bool output) {
    batch_.pos[i] = pos;
    batch_.n_seq_id[i] = n_seq;
    for (int32_t k = 0; k < n_seq; ++k) {
        batch_.seq_id[i][k] = seq_ids[k];
    }
    batch_.logits[i] = output ? 1 : 0;
}

void Batch::add_token(llama_token token, llama_pos pos, const std::vector<llama_seq_id> & seq_ids, bool output) {
    if (embd_ > 0) {
        throw nb::value_error("this batch holds embeddings; use add_embeddings()");
    }
    check_room(1);
    check_seq_ids(seq_ids);
    if (token < 0) {
        throw nb::value_error(("token id " + std::to_string(token) + " is negative").c_str());
    }
    if (pos < 0) {
        throw nb::value_error("position must be >= 0");
    }
    const int32_t i = batch_.n_tokens;
    batch_.token[i] = token;
    put(i, pos, seq_ids.data(), static_cast<int32_t>(seq_ids.size()), output);
    batch_.n_tokens++;
}

void Batch::add_tokens(const std::vector<llama_token> & tokens, llama_pos pos0, llama_seq_id seq_id, bool output_last) {
    if (embd_ > 0) {
        throw nb::value_error("this batch holds embeddings; use add_embeddings()");
    }
    check_room(tokens.size());
    check_seq_ids({seq_id});
    if (pos0 < 0) {
        throw nb::value_error("position must be >= 0");
    }
    for (llama_token t : tokens) {
        if (t < 0) {
            throw nb::value_error(("token id " + std::to_string(t) + " is negative").c_str());
        }
    }
    for (size_t k = 0; k < tokens.size(); ++k) {
        const int32_t i = batch_.n_tokens;
        batch_.token[i] = tokens[k];
        put(i, pos0 + static_cast<llama_pos>(k), &seq_id, 1, output_last && k + 1 == tokens.size());
        batch_.n_tokens++;
    }
}

void Batch::add_embeddings(const float * rows, size_t n_rows, llama_pos pos0, llama_seq_id seq_id, bool output_last) {
    if (embd_ == 0) {
        throw nb::value_error("this batch holds token ids; create it with embd > 0 for embeddings");
    }
    check_room(n_rows);
    check_seq_ids({seq_id});
    if (pos0 < 0) {
        throw nb::value_error("position must be >= 0");
    }
    for (size_t k = 0; k < n_rows; ++k) {
        const int32_t i = batch_.n_tokens;
        std::memcpy(batch_.embd + static_cast<size_t>(i) * embd_, rows + k * embd_, sizeof(float) * embd_);
        put(i, pos0 + static_cast<llama_pos>(k), &seq_id, 1, output_last && k + 1 == n_rows);
        batch_.n_tokens++;
    }
}

void Batch::assign(int32_t n_tokens, const llama_token * token, const float * embd, const llama_pos * pos,
                   const int32_t * n_seq_id, const llama_seq_id * seq_id, size_t seq_stride, const int8_t * logits) {
    if (n_tokens < 0 || n_tokens > capacity_) {
        throw nb::value_error(("n_tokens " + std::to_string(n_tokens) + " is outside the batch's capacity [0, " +
                               std::to_string(capacity_) + "]").c_str());
    }
    if ((embd_ > 0) != (embd != nullptr) || (embd_ == 0) != (token != nullptr)) {
        throw nb::value_error(embd_ > 0 ? "this batch holds embeddings: pass embd, not token"
                                        : "this batch holds token ids: pass token, not embd");
    }
    for (int32_t i = 0; i < n_tokens; ++i) {
        if (token != nullptr && token[i] < 0) {
            throw nb::value_error(("token id " + std::to_string(token[i]) + " at batch index " + std::to_string(i) +
                                   " is negative").c_str());
        }
        if (pos[i] < 0) {
            throw nb::value_error(("position " + std::to_string(pos[i]) + " at batch index " + std::to_string(i) +
                                   " is negative").c_str());
        }
        if (n_seq_id[i] < 1 || n_seq_id[i] > n_seq_max_ || static_cast<size_t>(n_seq_id[i]) > seq_stride) {
            throw nb::value_error(("n_seq_id[" + std::to_string(i) + "] = " + std::to_string(n_seq_id[i]) +
                                   " must be in [1, " + std::to_string(n_seq_max_) + "]").c_str());
        }
        for (int32_t k = 0; k < n_seq_id[i]; ++k) {
            const llama_seq_id s = seq_id[static_cast<size_t>(i) * seq_stride + k];
            if (s < 0) {
                throw nb::value_error(("seq_id[" + std::to_string(i) + "][" + std::to_string(k) + "] = " +
                                       std::to_string(s) + " is negative").c_str());
            }
        }
    }
    for (int32_t i = 0; i < n_tokens; ++i) {
        if (token != nullptr) {
            batch_.token[i] = token[i];
        } else {
            std::memcpy(batch_.embd + static_cast<size_t>(i) * embd_, embd + static_cast<size_t>(i) * embd_, sizeof(float) * embd_);
        }
        put(i, pos[i], seq_id + static_cast<size_t>(i) * seq_stride, n_seq_id[i], logits[i] != 0);
    }
    batch_.n_tokens = n_tokens;
}

void Batch::set_output(int32_t i, bool output) {
    if (i < 0 || i >= batch_.n_tokens) {
        throw nb::index_error("batch index out of range");
    }
    batch_.logits[i] = output ? 1 : 0;
}


// --- BatchExt ---

BatchExt::BatchExt(Context & ctx, nb::object ctx_ref) : ctx_(&ctx), ctx_ref_(std::move(ctx_ref)) {
    auto lk = ctx.lock_open();
    llama_context * raw = ctx.get();
    const llama_model * model = llama_get_model(raw);
    capacity_ = static_cast<int32_t>(llama_n_batch(raw));
    n_seq_max_ = static_cast<int32_t>(llama_n_seq_max(raw));
    const int rope = llama_model_rope_type(model);
    n_pos_per_embd_ = (rope == LLAMA_ROPE_TYPE_MROPE || rope == LLAMA_ROPE_TYPE_IMROPE) ? 4 : 1;
    batch_ = llama_batch_ext_init(raw);
    if (batch_ == nullptr) {
        throw nb::value_error("llama.cpp could not create the batch");
    }
}

BatchExt::~BatchExt() {
    if (batch_ != nullptr) {
        llama_batch_ext_free(batch_);
    }
}

llama_batch_ext * BatchExt::get() const {
    if (batch_ == nullptr) {
        throw nb::value_error("the batch was freed (llama_batch_ext_free)");
    }
    return batch_;
}

llama_batch_ext * BatchExt::live() const {
    llama_batch_ext * b = get();
    if (busy_.load()) {
        throw std::runtime_error("the batch is being processed by llama_process in another thread");
    }
    return b;
}

void BatchExt::free() {
    live();
    llama_batch_ext_free(batch_);
    batch_ = nullptr;
    entries_.clear();
}

void BatchExt::clear() {
    llama_batch_ext_clear(live());
    entries_.clear();
}

int32_t BatchExt::add(llama_seq_id seq_id) {
    const int32_t idx = llama_batch_ext_add(live(), seq_id);
    if (idx >= 0) {
        entries_.emplace_back();
    }
    return idx;
}

int32_t BatchExt::add_token(llama_seq_id seq_id, llama_token id) {
    const int32_t idx = llama_batch_ext_add_token(live(), seq_id, id);
    if (idx >= 0 || idx == -2) {
        // -2: llama.cpp keeps the entry it added, without a token id
        entries_.emplace_back();
        entries_.back().has_token = idx >= 0;
    }
    return idx;
}

int32_t BatchExt::add_embd(llama_seq_id seq_id, const float * data, size_t n_rows, size_t n_embd) {
    const int32_t idx = llama_batch_ext_add_embd(live(), seq_id, llama_embd{data, n_rows, n_embd});
    if (idx >= 0 || idx == -2) {
        entries_.emplace_back();  // -2: as in add_token, the entry stays, without an embedding
        entries_.back().has_embd = idx >= 0;
    }
    return idx;
}

bool BatchExt::add_seq(int32_t idx, llama_seq_id seq_id) {
    return llama_batch_ext_add_seq(live(), idx, seq_id);
}

bool BatchExt::set_embd_token(int32_t idx, const float * data, size_t n_rows, size_t n_embd) {
    const bool ok = llama_batch_ext_set_embd_token(live(), idx, llama_embd{data, n_rows, n_embd});
    if (ok) {
        entries_[static_cast<size_t>(idx)].has_embd = true;
    }
    return ok;
}

bool BatchExt::set_embd_state(int32_t idx, const float * data, size_t n_rows, size_t n_embd) {
    return llama_batch_ext_set_embd_state(live(), idx, llama_embd{data, n_rows, n_embd});
}

bool BatchExt::set_output(int32_t idx, bool value) {
    // llama_batch_ext_set_output_embd and _logits set the same flag
    const bool ok = llama_batch_ext_set_output_logits(live(), idx, value);
    if (ok) {
        entries_[static_cast<size_t>(idx)].output = value;
    }
    return ok;
}

size_t BatchExt::positions_needed(int32_t idx) const {
    get();
    if (!valid_idx(idx)) {
        return 0;
    }
    // llama.cpp reads one position for a token entry, n_pos_per_embd for any other
    return entries_[static_cast<size_t>(idx)].has_token ? 1 : static_cast<size_t>(n_pos_per_embd_);
}

bool BatchExt::set_pos(int32_t idx, const std::vector<llama_pos> & pos) {
    llama_batch_ext * b = live();
    if (!valid_idx(idx)) {
        return false;
    }
    Entry & e = entries_[static_cast<size_t>(idx)];
    const size_t need = positions_needed(idx);
    if (pos.size() < need) {
        throw nb::value_error(("batch index " + std::to_string(idx) + " needs " + std::to_string(need) +
                               " position(s), got " + std::to_string(pos.size())).c_str());
    }
    for (size_t k = 0; k < need; ++k) {
        if (pos[k] < 0) {
            throw nb::value_error(("position " + std::to_string(pos[k]) + " is negative").c_str());
        }
    }
    const bool ok = llama_batch_ext_set_pos(b, idx, pos.data());
    if (ok) {
        e.pos_set = true;
    }
    return ok;
}

void BatchExt::check_ready(const Context & ctx, llama_context * raw, int32_t type) const {
    get();
    if (ctx_ != &ctx) {
        throw nb::value_error("the batch was made for another context (llama_batch_ext_init(ctx) ties it to one)");
    }
    if (type != LLAMA_PROCESS_TYPE_ENCODE && type != LLAMA_PROCESS_TYPE_DECODE) {
        throw nb::value_error(("type must be LLAMA_PROCESS_TYPE_ENCODE (0) or LLAMA_PROCESS_TYPE_DECODE (1), got " +
                               std::to_string(type)).c_str());
    }
    if (entries_.empty()) {
        throw nb::value_error("the batch is empty");
    }
    const Entry & first = entries_.front();
    for (size_t i = 0; i < entries_.size(); ++i) {
        const Entry & e = entries_[i];
        const std::string at = "batch index " + std::to_string(i);
        if (!e.has_token && !e.has_embd) {
            throw nb::value_error((at + " has neither a token id nor an embedding").c_str());
        }
        if (e.has_token != first.has_token || e.has_embd != first.has_embd) {
            throw nb::value_error((at + " holds other content (token id / embedding) than batch index 0: "
                                   "every entry of a batch must hold the same").c_str());
        }
        if (!e.pos_set) {
            throw nb::value_error((at + " has no position: set it with llama_batch_ext_set_pos").c_str());
        }
    }
    const size_t n = entries_.size();
    const bool one_ubatch = type == LLAMA_PROCESS_TYPE_ENCODE || llama_get_memory(raw) == nullptr ||
                            !llama_get_causal_attn(raw);
    if (one_ubatch && n > llama_n_ubatch(raw)) {
        throw nb::value_error(("the batch has " + std::to_string(n) + " entries, more than n_ubatch (" +
                               std::to_string(llama_n_ubatch(raw)) +
                               "): encoding and non-causal attention take the whole batch in one ubatch").c_str());
    }
}

void init_batch(nb::module_ & m) {
    using Rows = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
    using I32 = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
    using I8 = nb::ndarray<const int8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
    using F32 = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
    using SeqIds = nb::ndarray<const int32_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
    nb::class_<Batch>(m, "Batch", "A reusable batch of tokens (or input embeddings) for Context.decode().")
        .def(nb::init<int32_t, int32_t, int32_t>(), nb::arg("capacity"), nb::arg("n_seq_max") = 1, nb::arg("embd") = 0,
             "capacity: most tokens; n_seq_max: most sequence ids one token may belong to; "
             "embd > 0: hold input embedding rows of that width instead of token ids.")
        .def("add", &Batch::add_token, nb::arg("token"), nb::arg("pos"), nb::arg("seq_ids"), nb::arg("output") = false,
             "Append one token at position `pos` of the given sequences; output=True asks for its logits.")
        .def("add", [](Batch & b, llama_token token, llama_pos pos, llama_seq_id seq_id, bool output) {
                 b.add_token(token, pos, {seq_id}, output);
             }, nb::arg("token"), nb::arg("pos"), nb::arg("seq_id"), nb::arg("output") = false)
        .def("add_tokens", &Batch::add_tokens, nb::arg("tokens"), nb::arg("pos0"), nb::arg("seq_id"), nb::arg("output_last") = true,
             "Append consecutive tokens of one sequence at positions pos0, pos0+1, ...")
        .def("add_embeddings", [](Batch & b, Rows rows, llama_pos pos0, llama_seq_id seq_id, bool output_last) {
                 if (static_cast<int64_t>(rows.shape(1)) != b.embd()) {
                     throw nb::value_error(("embedding rows must have width " + std::to_string(b.embd())).c_str());
                 }
                 b.add_embeddings(rows.data(), rows.shape(0), pos0, seq_id, output_last);
             }, nb::arg("rows"), nb::arg("pos0"), nb::arg("seq_id"), nb::arg("output_last") = true,
             "Append float32 rows (n, embd) of one sequence at consecutive positions.")
        .def("assign", [](Batch & b, int32_t n_tokens, std::optional<I32> token, std::optional<F32> embd, I32 pos,
                          I32 n_seq_id, SeqIds seq_id, I8 logits) {
                 const size_t n = static_cast<size_t>(n_tokens < 0 ? 0 : n_tokens);
                 auto too_short = [n](size_t have, const char * name) {
                     if (have < n) {
                         throw nb::value_error((std::string(name) + " has fewer than n_tokens entries").c_str());
                     }
                 };
                 if (token) {
                     too_short(token->shape(0), "token");
                 }
                 if (embd) {
                     too_short(b.embd() > 0 ? embd->shape(0) / static_cast<size_t>(b.embd()) : 0, "embd");
                 }
                 too_short(pos.shape(0), "pos");
                 too_short(n_seq_id.shape(0), "n_seq_id");
                 too_short(seq_id.shape(0), "seq_id");
                 too_short(logits.shape(0), "logits");
                 b.assign(n_tokens, token ? token->data() : nullptr, embd ? embd->data() : nullptr, pos.data(),
                          n_seq_id.data(), seq_id.data(), seq_id.shape(1), logits.data());
             }, nb::arg("n_tokens"), nb::arg("token").none(), nb::arg("embd").none(), nb::arg("pos"), nb::arg("n_seq_id"),
             nb::arg("seq_id"), nb::arg("logits"),
             "Replace the contents with the first n_tokens entries of llama_batch-layout arrays "
             "(int32 token/pos/n_seq_id, int32 seq_id rows, int8 logits; float32 embd, n_tokens * embd).")
        .def("set_output", &Batch::set_output, nb::arg("i"), nb::arg("output"))
        .def("clear", &Batch::clear)
        .def_prop_ro("n_tokens", &Batch::n_tokens)
        .def("__len__", &Batch::n_tokens)
        .def_prop_ro("capacity", &Batch::capacity)
        .def_prop_ro("n_seq_max", &Batch::n_seq_max)
        .def_prop_ro("embd", &Batch::embd)
        .def_prop_ro("outputs", [](const Batch & b) {
            std::vector<int32_t> out;
            for (int32_t i = 0; i < b.n_tokens(); ++i) {
                if (b.raw().logits[i]) {
                    out.push_back(i);
                }
            }
            return out;
        }, "Batch indices whose logits/embeddings are requested.");

    // Embedding rows: a flat float32 array holding at least n_rows * n_embd values.
    auto rows_of = [](const F32 & data, size_t n_rows, size_t n_embd) {
        if (n_embd != 0 && n_rows > data.shape(0) / n_embd) {
            throw nb::value_error(("the embedding holds " + std::to_string(data.shape(0)) + " floats, fewer than n_rows * n_embd = " +
                                   std::to_string(n_rows) + " * " + std::to_string(n_embd)).c_str());
        }
        return data.data();
    };
    nb::class_<BatchExt>(m, "BatchExt",
        "llama.cpp's extended batch (llama_batch_ext) for one context; results are the C functions'.")
        .def("__init__", [](BatchExt * self, nb::object ctx) {
            new (self) BatchExt(nb::cast<Context &>(ctx), ctx);
        }, nb::arg("ctx"), "llama_batch_ext_init: room for the context's n_batch entries.")
        .def("free", &BatchExt::free)
        .def_prop_ro("freed", &BatchExt::freed)
        .def("clear", &BatchExt::clear)
        .def("add", &BatchExt::add, nb::arg("seq_id"))
        .def("add_token", &BatchExt::add_token, nb::arg("seq_id"), nb::arg("id"))
        .def("add_embd", [rows_of](BatchExt & b, llama_seq_id seq_id, F32 data, size_t n_rows, size_t n_embd) {
            return b.add_embd(seq_id, rows_of(data, n_rows, n_embd), n_rows, n_embd);
        }, nb::arg("seq_id"), nb::arg("data"), nb::arg("n_rows"), nb::arg("n_embd"))
        .def("add_seq", &BatchExt::add_seq, nb::arg("idx"), nb::arg("seq_id"))
        .def("set_embd_token", [rows_of](BatchExt & b, int32_t idx, F32 data, size_t n_rows, size_t n_embd) {
            return b.set_embd_token(idx, rows_of(data, n_rows, n_embd), n_rows, n_embd);
        }, nb::arg("idx"), nb::arg("data"), nb::arg("n_rows"), nb::arg("n_embd"))
        .def("set_embd_state", [rows_of](BatchExt & b, int32_t idx, F32 data, size_t n_rows, size_t n_embd) {
            return b.set_embd_state(idx, rows_of(data, n_rows, n_embd), n_rows, n_embd);
        }, nb::arg("idx"), nb::arg("data"), nb::arg("n_rows"), nb::arg("n_embd"))
        .def("set_output", &BatchExt::set_output, nb::arg("idx"), nb::arg("value"))
        .def("set_pos", &BatchExt::set_pos, nb::arg("idx"), nb::arg("pos"))
        .def("positions_needed", &BatchExt::positions_needed, nb::arg("idx"))
        .def("__len__", [](const BatchExt & b) { b.get(); return b.entries().size(); })
        .def_prop_ro("capacity", &BatchExt::capacity)
        .def_prop_ro("n_seq_max", &BatchExt::n_seq_max);
}

}  // namespace allama
