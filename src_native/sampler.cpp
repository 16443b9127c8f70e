#include "sampler.h"
#include "best_logits.h"

#include "errors.h"
#include "grammar_check.h"
#include "interrupts_blocked.h"

#include <nanobind/ndarray.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>

namespace nb = nanobind;

namespace allama {

namespace {

void validate(const SamplerParams & p, int32_t n_vocab) {
    require(std::isfinite(p.temperature), "temperature must be finite");
    require(std::isfinite(p.top_p) && std::isfinite(p.min_p) && std::isfinite(p.typical_p), "top_p, min_p and typical_p must be finite");
    require(std::isfinite(p.repeat_penalty) && p.repeat_penalty > 0.0f, "repeat_penalty must be a finite number > 0");
    require(std::isfinite(p.frequency_penalty) && std::isfinite(p.presence_penalty), "frequency_penalty and presence_penalty must be finite");
    require(p.penalty_last_n >= 0, "penalty_last_n must be >= 0");
    require(p.mirostat_mode >= 0 && p.mirostat_mode <= 2, "mirostat_mode must be 0 (off), 1 or 2");
    require(std::isfinite(p.mirostat_tau) && std::isfinite(p.mirostat_eta), "mirostat_tau and mirostat_eta must be finite");
    require(p.mirostat_m >= 1, "mirostat_m must be >= 1");
    require(p.min_keep >= 0, "min_keep must be >= 0");
    require(p.xtc_probability >= 0.0f && p.xtc_probability <= 1.0f, "xtc_probability must be in [0, 1]");
    require(std::isfinite(p.xtc_threshold), "xtc_threshold must be finite");
    require(std::isfinite(p.dry_multiplier) && p.dry_multiplier >= 0.0f, "dry_multiplier must be >= 0");
    require(std::isfinite(p.dry_base), "dry_base must be finite");
    require(p.dry_allowed_length >= 0, "dry_allowed_length must be >= 0");
    require(p.dry_penalty_last_n >= 0, "dry_penalty_last_n must be >= 0");
    for (const auto & [token, bias] : p.logit_bias) {
        require(token >= 0 && token < n_vocab, "logit_bias token id " + std::to_string(token) + " is out of range [0, " +
                                                   std::to_string(n_vocab) + ")");
        require(!std::isnan(bias), "logit_bias values must not be NaN");
    }
    for (llama_token token : p.grammar_trigger_tokens) {
        require(token >= 0 && token < n_vocab, "grammar trigger token " + std::to_string(token) + " is out of range");
    }
    require(!p.grammar_root.empty(), "grammar_root must not be empty");
    require(!p.grammar_lazy || !p.grammar.empty(), "a lazy grammar needs grammar text");
    require(!p.grammar_lazy || !p.grammar_trigger_patterns.empty() || !p.grammar_trigger_tokens.empty(),
            "a lazy grammar needs trigger patterns or trigger tokens");
}

// Builds the chain in llama-cpp-python's order: biases and penalties see the
// raw logits, the grammar masks the full vocabulary, then the truncation
// samplers and the final pick.
llama_sampler * build_chain(const llama_model * model, const SamplerParams & p, int32_t n_vocab) {
    const llama_vocab * vocab = llama_model_get_vocab(model);
    llama_sampler_chain_params cp = llama_sampler_chain_default_params();
    cp.no_perf = false;
    std::unique_ptr<llama_sampler, decltype(&llama_sampler_free)> chain(llama_sampler_chain_init(cp), llama_sampler_free);
    auto add = [&](llama_sampler * s) { llama_sampler_chain_add(chain.get(), s); };

    if (!p.logit_bias.empty()) {
        std::vector<llama_logit_bias> biases;
        for (const auto & [token, bias] : p.logit_bias) {
            biases.push_back({token, bias});
        }
        add(llama_sampler_init_logit_bias(n_vocab, static_cast<int32_t>(biases.size()), biases.data()));
    }
    if (p.penalty_last_n != 0 && (p.repeat_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f)) {
        add(llama_sampler_init_penalties(n_vocab, p.penalty_last_n, p.repeat_penalty, p.frequency_penalty, p.presence_penalty));
    }
    if (p.dry_multiplier > 0.0f && p.dry_penalty_last_n != 0) {
        std::vector<const char *> breakers;
        for (const auto & s : p.dry_sequence_breakers) {
            breakers.push_back(s.c_str());
        }
        add(llama_sampler_init_dry(vocab, p.dry_multiplier, p.dry_base, p.dry_allowed_length, p.dry_penalty_last_n,
                                   breakers.data(), breakers.size()));
    }
    if (!p.grammar.empty()) {
        add(init_grammar_sampler(vocab, p.grammar, p.grammar_root, p.grammar_lazy, p.grammar_trigger_patterns,
                                 p.grammar_trigger_tokens));
    }
    const size_t min_keep = static_cast<size_t>(p.min_keep);
    if (p.temperature < 0.0f) {
        add(llama_sampler_init_dist(p.seed));
    } else if (p.temperature == 0.0f) {
        add(llama_sampler_init_greedy());
    } else if (p.mirostat_mode == 1) {
        add(llama_sampler_init_mirostat(n_vocab, p.seed, p.mirostat_tau, p.mirostat_eta, p.mirostat_m));
    } else if (p.mirostat_mode == 2) {
        add(llama_sampler_init_mirostat_v2(p.seed, p.mirostat_tau, p.mirostat_eta));
    } else {
        add(llama_sampler_init_top_k(p.top_k));
        add(llama_sampler_init_typical(p.typical_p, min_keep));
        add(llama_sampler_init_top_p(p.top_p, min_keep));
        add(llama_sampler_init_min_p(p.min_p, min_keep));
        if (p.xtc_probability > 0.0f) {
            add(llama_sampler_init_xtc(p.xtc_probability, p.xtc_threshold, min_keep, p.seed));
        }
        if (p.top_n_sigma > 0.0f) {
            add(llama_sampler_init_top_n_sigma(p.top_n_sigma));
        }
        add(llama_sampler_init_temp(p.temperature));
        add(llama_sampler_init_dist(p.seed));
    }
    return chain.release();
}

}  // namespace

SamplerChain::SamplerChain(const Model & model, const SamplerParams & params) : model_(model.ptr()) {
    n_vocab_ = llama_vocab_n_tokens(llama_model_get_vocab(model_.get()));
    validate(params, n_vocab_);
    has_grammar_ = !params.grammar.empty();
    chain_ = build_chain(model_.get(), params, n_vocab_);
    const int32_t n_samplers = llama_sampler_chain_n(chain_);
    const std::string first = n_samplers > 0 ? llama_sampler_name(llama_sampler_chain_get(chain_, 0)) : "";
    if (first == "top-k") {
        leading_top_k_ = params.top_k;
    }
    only_greedy_ = n_samplers == 1 && first == "greedy";
}

SamplerChain::SamplerChain(ModelPtr model, llama_sampler * chain, int32_t n_vocab, bool has_grammar,
                           int32_t leading_top_k, bool only_greedy)
    : model_(std::move(model)), chain_(chain), n_vocab_(n_vocab), has_grammar_(has_grammar),
      leading_top_k_(leading_top_k), only_greedy_(only_greedy) {}

SamplerChain::~SamplerChain() {
    if (chain_ != nullptr) {
        llama_sampler_free(chain_);
    }
}

llama_token SamplerChain::sample_row(const float * logits) {
    if (only_greedy_) {
        const llama_token best = first_argmax(logits, n_vocab_);
        llama_sampler_accept(chain_, best);
        return best;
    }
    bool sorted = false;
    if (leading_top_k_ > 0 && leading_top_k_ < n_vocab_) {
        select_top_k(logits, n_vocab_, leading_top_k_, candidates_);
        sorted = true;
    } else {
        candidates_.resize(static_cast<size_t>(n_vocab_));
        for (llama_token t = 0; t < n_vocab_; ++t) {
            candidates_[t] = llama_token_data{t, logits[t], 0.0f};
        }
    }
    llama_token_data_array cur{candidates_.data(), candidates_.size(), -1, sorted};
    llama_sampler_apply(chain_, &cur);
    if (cur.selected < 0 || static_cast<size_t>(cur.selected) >= cur.size) {
        throw std::runtime_error("the sampler chain selected no token");
    }
    const llama_token_data & picked = cur.data[cur.selected];
    if (has_grammar_ && std::isinf(picked.logit) && picked.logit < 0) {
        throw GrammarFailure("the grammar allows no next token");
    }
    try {
        llama_sampler_accept(chain_, picked.id);
    } catch (const std::exception & e) {
        throw GrammarFailure(std::string("the grammar rejected the sampled token: ") + e.what());
    }
    return picked.id;
}

void SamplerChain::accept(llama_token token) {
    if (token < 0 || token >= n_vocab_) {
        throw nb::value_error(("token id " + std::to_string(token) + " is out of range").c_str());
    }
    if (has_grammar_) {
        for (int32_t i = 0; i < llama_sampler_chain_n(chain_); ++i) {
            llama_sampler * s = llama_sampler_chain_get(chain_, i);
            if (std::string(llama_sampler_name(s)) == "grammar") {
                check_grammar_allows(s, token);
            }
        }
    }
    try {
        llama_sampler_accept(chain_, token);
    } catch (const std::exception & e) {
        throw GrammarFailure(std::string("the grammar rejected the token: ") + e.what());
    }
}

void SamplerChain::reset() { llama_sampler_reset(chain_); }

SamplerChain * SamplerChain::clone() const {
    return new SamplerChain(model_, llama_sampler_clone(chain_), n_vocab_, has_grammar_, leading_top_k_, only_greedy_);
}

namespace {

// Rows per thread below which sampling stays on the calling thread: a thread's start costs
// about as much as sampling a few rows (a top-k chain over 32k logits: ~15-25 us a row).
constexpr size_t kRowsPerSamplingThread = 8;

// Samples rows[k] with jobs[k]'s chain for every k, on up to `n_threads` threads (the caller
// and short-lived helpers, made with Ctrl-C and SIGTERM blocked so that the kernel never
// hands those to them). The chains must be distinct: each keeps its own state.
void sample_rows(const std::vector<std::pair<SamplerChain *, int32_t>> & jobs, const std::vector<const float *> & rows,
                 std::vector<llama_token> & tokens, std::vector<std::exception_ptr> & failures, int32_t n_threads) {
    auto run = [&](size_t begin, size_t end) {
        for (size_t k = begin; k < end; ++k) {
            try {
                tokens[k] = jobs[k].first->sample_row(rows[k]);
            } catch (...) {
                failures[k] = std::current_exception();
            }
        }
    };
    const size_t n = jobs.size();
    const size_t threads = std::min<size_t>(static_cast<size_t>(std::max(n_threads, 1)), n / kRowsPerSamplingThread);
    if (threads <= 1) {
        run(0, n);
        return;
    }
    std::vector<std::thread> helpers;
    const size_t share = (n + threads - 1) / threads;
    {
        const InterruptsBlocked blocked;
        try {
            for (size_t t = 1; t < threads; ++t) {
                helpers.emplace_back(run, t * share, std::min(n, (t + 1) * share));
            }
        } catch (const std::system_error &) {
            // no more threads to be had: the caller samples the rest
        }
    }
    run(0, std::min(n, share));
    for (size_t t = helpers.size() + 1; t < threads; ++t) {
        run(t * share, std::min(n, (t + 1) * share));
    }
    for (std::thread & helper : helpers) {
        helper.join();
    }
}

}  // namespace

void init_sampler(nb::module_ & m) {
    nb::class_<SamplerParams>(m, "SamplerParams", "Sampling options, with llama-cpp-python's names and defaults.")
        .def(nb::init<>())
        .def_rw("temperature", &SamplerParams::temperature, "0 greedy; < 0 samples from the raw distribution.")
        .def_rw("top_k", &SamplerParams::top_k)
        .def_rw("top_p", &SamplerParams::top_p)
        .def_rw("min_p", &SamplerParams::min_p)
        .def_rw("typical_p", &SamplerParams::typical_p)
        .def_rw("repeat_penalty", &SamplerParams::repeat_penalty)
        .def_rw("frequency_penalty", &SamplerParams::frequency_penalty)
        .def_rw("presence_penalty", &SamplerParams::presence_penalty)
        .def_rw("penalty_last_n", &SamplerParams::penalty_last_n, "Tokens of history the penalties look at.")
        .def_rw("mirostat_mode", &SamplerParams::mirostat_mode)
        .def_rw("mirostat_tau", &SamplerParams::mirostat_tau)
        .def_rw("mirostat_eta", &SamplerParams::mirostat_eta)
        .def_rw("mirostat_m", &SamplerParams::mirostat_m)
        .def_rw("logit_bias", &SamplerParams::logit_bias, "token id -> bias added to its logit (-inf bans it).")
        .def_rw("seed", &SamplerParams::seed, "0xFFFFFFFF picks a random seed.")
        .def_rw("grammar", &SamplerParams::grammar, "GBNF text; empty for none.")
        .def_rw("grammar_root", &SamplerParams::grammar_root)
        .def_rw("grammar_lazy", &SamplerParams::grammar_lazy, "Apply the grammar only after a trigger.")
        .def_rw("grammar_trigger_patterns", &SamplerParams::grammar_trigger_patterns)
        .def_rw("grammar_trigger_tokens", &SamplerParams::grammar_trigger_tokens)
        .def_rw("xtc_probability", &SamplerParams::xtc_probability)
        .def_rw("xtc_threshold", &SamplerParams::xtc_threshold)
        .def_rw("top_n_sigma", &SamplerParams::top_n_sigma)
        .def_rw("dry_multiplier", &SamplerParams::dry_multiplier)
        .def_rw("dry_base", &SamplerParams::dry_base)
        .def_rw("dry_allowed_length", &SamplerParams::dry_allowed_length)
        .def_rw("dry_penalty_last_n", &SamplerParams::dry_penalty_last_n)
        .def_rw("dry_sequence_breakers", &SamplerParams::dry_sequence_breakers)
        .def_rw("min_keep", &SamplerParams::min_keep);

    using Row = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
    nb::class_<SamplerChain>(m, "SamplerChain", "A token sampler for one sequence (llama.cpp sampler chain).")
        .def(nb::init<const Model &, const SamplerParams &>(), nb::arg("model"), nb::arg("params") = SamplerParams(),
             "Build a chain; raises GrammarError when the grammar does not parse, ValueError on bad options.")
        .def("sample", [](SamplerChain & s, Context & ctx, int32_t i) {
            auto lk = ctx.lock_open();
            ctx.check_output_row(i);
            ctx.wait_for_outputs();
            const float * row = llama_get_logits_ith(ctx.get(), i);
            if (row == nullptr || ctx.n_vocab() != s.n_vocab()) {
                throw nb::value_error("the context has no logits for this row, or belongs to another vocabulary");
            }
            nb::gil_scoped_release release;
            return s.sample_row(row);
        }, nb::arg("ctx"), nb::arg("i") = -1, "Sample from an output row of the last decode and accept the token.")
        .def("sample_logits", [](SamplerChain & s, Row logits) {
            if (static_cast<int64_t>(logits.shape(0)) != s.n_vocab()) {
                throw nb::value_error(("logits must have n_vocab = " + std::to_string(s.n_vocab()) + " entries").c_str());
            }
            nb::gil_scoped_release release;
            return s.sample_row(logits.data());
        }, nb::arg("logits"), "Sample from a float32 logits vector (e.g. after a Python logits processor) and accept it.")
        .def("accept", &SamplerChain::accept, nb::arg("token"), "Feed a token the chain did not pick (prompt history, forced tokens).")
        .def("reset", &SamplerChain::reset)
        .def("clone", &SamplerChain::clone, "An independent copy with the same state.")
        .def_prop_ro("n_samplers", [](const SamplerChain & s) { return llama_sampler_chain_n(s.get()); })
        .def_prop_ro("seed", [](const SamplerChain & s) { return llama_sampler_get_seed(s.get()); })
        .def_prop_ro("names", [](const SamplerChain & s) {
            std::vector<std::string> out;
            for (int32_t i = 0; i < llama_sampler_chain_n(s.get()); ++i) {
                out.emplace_back(llama_sampler_name(llama_sampler_chain_get(s.get(), i)));
            }
            return out;
        }, "Names of the samplers in the chain, in order.");

    m.def("grammar_problem", [](const std::string & grammar, const std::string & root) -> nb::object {
        const std::string problem = grammar_problem(nullptr, grammar, root);
        return problem.empty() ? nb::none() : nb::object(nb::str(problem.c_str()));
    }, nb::arg("grammar"), nb::arg("root") = "root",
    nb::sig("def grammar_problem(grammar: str, root: str = 'root') -> str | None"),
    "Why a GBNF grammar does not parse (or lacks its root rule), or None when it is fine.");

    m.def("sample_batch", [](Context & ctx, const std::vector<std::pair<SamplerChain *, int32_t>> & jobs) {
        auto lk = ctx.lock_open();
        std::vector<const float *> rows(jobs.size(), nullptr);
        for (size_t k = 0; k < jobs.size(); ++k) {
            if (jobs[k].first == nullptr) {
                throw nb::type_error("expected (SamplerChain, row) pairs");
            }
            if (jobs[k].first->n_vocab() != ctx.n_vocab()) {
                throw nb::value_error("a sampler chain belongs to another vocabulary");
            }
            ctx.check_output_row(jobs[k].second);
        }
        ctx.wait_for_outputs();
        for (size_t k = 0; k < jobs.size(); ++k) {
            rows[k] = llama_get_logits_ith(ctx.get(), jobs[k].second);
            if (rows[k] == nullptr) {
                throw nb::value_error("the context has no logits for a requested row");
            }
        }
        std::vector<llama_token> tokens(jobs.size(), -1);
        std::vector<std::exception_ptr> failures(jobs.size());
        // The cores that decoded the batch are idle now: the rows are sampled on as many
        // threads, unless a chain appears twice (its rows must then be sampled in order).
        std::unordered_set<const SamplerChain *> chains;
        for (const auto & job : jobs) {
            chains.insert(job.first);
        }
        const int32_t n_threads = chains.size() == jobs.size() ? llama_n_threads(ctx.get()) : 1;
        {
            nb::gil_scoped_release release;
            sample_rows(jobs, rows, tokens, failures, n_threads);
        }
        nb::list out;
        for (size_t k = 0; k < jobs.size(); ++k) {
            if (!failures[k]) {
                out.append(nb::int_(tokens[k]));
                continue;
            }
            out.append(python_exception(failures[k]));
        }
        return out;
    }, nb::arg("ctx"), nb::arg("jobs"),
    nb::sig("def sample_batch(ctx: Context, jobs: collections.abc.Sequence[tuple[SamplerChain, int]]) -> list[int | Exception]"),
    "Sample every (chain, output row) pair of the last decode in one call with the GIL released "
    "(on the context's n_threads when there are many rows and every chain is distinct). "
    "Each entry is the accepted token id, or the exception that chain raised (e.g. GrammarError); "
    "one failing chain does not stop the others.");
}

}  // namespace allama
