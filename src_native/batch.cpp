#include "batch.h"

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
}

}  // namespace allama
