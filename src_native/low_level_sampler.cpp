#include "low_level_sampler.h"

#include "context.h"
#include "errors.h"
#include "grammar_check.h"
#include "vocab.h"

#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace nb = nanobind;

namespace allama {

namespace {

size_t min_keep_arg(int64_t min_keep) {
    require(min_keep >= 0, "min_keep must be >= 0");
    return static_cast<size_t>(min_keep);
}

void require_not_nan(float v, const char * name) {
    require(!std::isnan(v), std::string(name) + " must not be NaN");
}

void require_finite(float v, const char * name) {
    require(std::isfinite(v), std::string(name) + " must be finite");
}

// Custom samplers by raw pointer, so that what a Python clone callback returns can be matched
// to its handle. Each access holds registry_mutex (a free-threaded CPython runs threads at once).
nb::ft_mutex registry_mutex;

std::unordered_map<const llama_sampler *, std::weak_ptr<SamplerState>> & custom_registry() {
    static auto * reg = new std::unordered_map<const llama_sampler *, std::weak_ptr<SamplerState>>();
    return *reg;
}

std::shared_ptr<SamplerState> registered(const llama_sampler * raw) {
    nb::ft_lock_guard lock(registry_mutex);
    auto it = custom_registry().find(raw);
    return it == custom_registry().end() ? nullptr : it->second.lock();
}

void register_custom(const llama_sampler * raw, const std::shared_ptr<SamplerState> & st) {
    nb::ft_lock_guard lock(registry_mutex);
    custom_registry()[raw] = st;
}

// Forgets `raw` unless it now names another live sampler than `owner`.
void unregister_custom(const llama_sampler * raw, const SamplerState * owner) {
    std::shared_ptr<SamplerState> current;  // (released after the lock: it may be the last reference)
    nb::ft_lock_guard lock(registry_mutex);
    auto it = custom_registry().find(raw);
    if (it == custom_registry().end()) {
        return;
    }
    current = it->second.lock();
    if (!current || current.get() == owner) {
        custom_registry().erase(it);
    }
}

// While a clone is in flight on this thread (clone callbacks run Python code on it), every
// sampler made here is held too: a callback returns a raw pointer and drops its handle, and the
// clone adopts the sampler.
thread_local int g_clone_depth = 0;
std::vector<std::shared_ptr<SamplerState>> & clone_pending() {
    thread_local std::vector<std::shared_ptr<SamplerState>> pending;  // empty outside a clone
    return pending;
}

void hold_while_cloning(const std::shared_ptr<SamplerState> & st) {
    if (g_clone_depth > 0) {
        clone_pending().push_back(st);
    }
}

std::shared_ptr<SamplerState> root_of(std::shared_ptr<SamplerState> st) {
    for (auto p = st->parent.lock(); p; p = p->parent.lock()) {
        st = p;
    }
    return st;
}

// Marks the tree of a sampler busy while a native call on it may run Python callbacks.
struct BusyGuard {
    std::shared_ptr<SamplerState> root;
    explicit BusyGuard(const std::shared_ptr<SamplerState> & st) : root(root_of(st)) { ++root->busy; }
    ~BusyGuard() { --root->busy; }
    BusyGuard(const BusyGuard &) = delete;
    BusyGuard & operator=(const BusyGuard &) = delete;
};

bool any_grammar(const SamplerState & st) {
    if (st.is_grammar) {
        return true;
    }
    for (const auto & child : st.children) {
        if (any_grammar(*child)) {
            return true;
        }
    }
    return false;
}

bool clone_by_callback(const SamplerState & st) { return st.is_custom && st.ptr->iface->clone != nullptr; }

// llama_sampler_clone aborts on a custom sampler with a context but no clone callback.
void check_clonable(const SamplerState & st) {
    if (st.is_custom && st.ptr->iface->clone == nullptr && st.ptr->ctx != nullptr) {
        throw nb::value_error("a custom sampler (llama_sampler_init) with a ctx but no clone callback cannot be cloned "
                              "(llama.cpp would abort): give its llama_sampler_i a clone callback, or use ctx=None");
    }
    for (const auto & child : st.children) {
        check_clonable(*child);
    }
}

// The sampler a clone callback returned, if it may be adopted: a live custom sampler that no
// chain or context owns and that this clone has not adopted already.
std::shared_ptr<SamplerState> adoptable(const llama_sampler * raw, const std::unordered_set<const SamplerState *> & taken) {
    if (raw == nullptr) {
        return nullptr;
    }
    auto st = registered(raw);
    if (!st || st->ptr != raw || st->in_chain || st->attached || st->busy > 0 || taken.count(st.get()) > 0) {
        return nullptr;
    }
    return st;
}

// Whether every sampler a clone callback returned into `raw` (the clone of `src`) can be adopted.
bool check_clone(const SamplerState & src, llama_sampler * raw, std::unordered_set<const SamplerState *> & taken) {
    if (clone_by_callback(src)) {
        auto st = adoptable(raw, taken);
        if (!st) {
            return false;
        }
        taken.insert(st.get());
        return true;
    }
    for (size_t i = 0; i < src.children.size(); ++i) {
        if (!check_clone(*src.children[i], llama_sampler_chain_get(raw, static_cast<int32_t>(i)), taken)) {
            return false;
        }
    }
    return true;
}

// Takes what clone callbacks returned out of the cloned chains (their owners keep them), so that
// freeing the rest frees nothing twice.
void detach_callback_clones(const SamplerState & src, llama_sampler * raw) {
    for (size_t i = src.children.size(); i-- > 0;) {
        const SamplerState & child = *src.children[i];
        if (clone_by_callback(child)) {
            llama_sampler_chain_remove(raw, static_cast<int32_t>(i));
        } else if (!child.children.empty()) {
            detach_callback_clones(child, llama_sampler_chain_get(raw, static_cast<int32_t>(i)));
        }
    }
}

// A state tree for `raw`, a clone of the sampler that `src` describes (check_clone passed).
std::shared_ptr<SamplerState> mirror(const SamplerState & src, llama_sampler * raw) {
    if (clone_by_callback(src)) {
        return adoptable(raw, {});
    }
    auto st = std::make_shared<SamplerState>();
    st->ptr = raw;
    st->is_chain = src.is_chain;
    st->is_grammar = src.is_grammar;
    st->no_perf = src.no_perf;
    st->n_vocab = src.n_vocab;
    st->model = src.model;
    if (src.is_custom) {  // llama.cpp's copy of a custom sampler without clone callback: same iface, ctx NULL
        st->is_custom = true;
        st->keepalive = src.keepalive;
        register_custom(raw, st);
    }
    for (size_t i = 0; i < src.children.size(); ++i) {
        auto child = mirror(*src.children[i], llama_sampler_chain_get(raw, static_cast<int32_t>(i)));
        child->in_chain = true;
        child->parent = st;
        st->children.push_back(std::move(child));
    }
    return st;
}

}  // namespace

bool sampler_has_custom(const SamplerState & st) {
    if (st.is_custom) {
        return true;
    }
    for (const auto & child : st.children) {
        if (sampler_has_custom(*child)) {
            return true;
        }
    }
    return false;
}

void check_sampler_idle(const std::shared_ptr<SamplerState> & st, const char * what) {
    if (root_of(st)->busy > 0) {
        throw nb::value_error((std::string(what) + ": the sampler is in use by a call that runs Python callbacks "
                               "(a custom sampler's, from llama_sampler_init): not while that call runs").c_str());
    }
}

SamplerState::~SamplerState() {
    if (ptr != nullptr && !in_chain) {
        // After the interpreter is gone a custom sampler's callbacks cannot run: leak it instead.
        if (nb::is_alive() || !sampler_has_custom(*this)) {
            llama_sampler_free(ptr);
        }
    }
    drop_custom();
    ptr = nullptr;
    for (auto & child : children) {
        child->mark_freed();
    }
}

void SamplerState::drop_custom() {
    if (!is_custom) {
        return;
    }
    if (ptr != nullptr) {
        unregister_custom(ptr, this);
    }
    if (keepalive.is_valid()) {
        if (nb::is_alive()) {
            nb::gil_scoped_acquire gil;
            keepalive.reset();
        } else {
            (void) keepalive.release();
        }
    }
}

void SamplerState::mark_freed() {
    drop_custom();
    ptr = nullptr;
    for (auto & child : children) {
        child->mark_freed();
    }
    children.clear();
}

void SamplerState::release() {
    if (ptr != nullptr) {
        llama_sampler_free(ptr);  // a chain frees its members with it
    }
    mark_freed();
}

Sampler Sampler::make(llama_sampler * raw, int32_t n_vocab, ModelPtr model, bool is_grammar) {
    if (raw == nullptr) {
        throw nb::value_error("llama.cpp could not create the sampler");
    }
    auto st = std::make_shared<SamplerState>();
    st->ptr = raw;
    st->n_vocab = n_vocab;
    st->model = std::move(model);
    st->is_grammar = is_grammar;
    hold_while_cloning(st);
    return Sampler(std::move(st));
}

Sampler Sampler::make_custom(uintptr_t iface_addr, size_t iface_size, uintptr_t ctx, nb::object keepalive) {
    if (iface_size != sizeof(llama_sampler_i)) {
        throw nb::value_error(("the llama_sampler_i struct has " + std::to_string(iface_size) + " bytes, llama.h's has " +
                               std::to_string(sizeof(llama_sampler_i))).c_str());
    }
    if (iface_addr == 0) {
        throw nb::value_error("iface is NULL");
    }
    auto * iface = reinterpret_cast<llama_sampler_i *>(iface_addr);
    if (iface->apply == nullptr) {
        throw nb::value_error("the llama_sampler_i has no apply callback (llama.h: required)");
    }
    if (iface->backend_init != nullptr || iface->backend_accept != nullptr || iface->backend_apply != nullptr ||
        iface->backend_set_input != nullptr || iface->backend_reset != nullptr) {
        throw nb::value_error("backend_* callbacks of a custom sampler are not supported (they build ggml graphs "
                              "inside llama_decode): leave them NULL");
    }
    Sampler s = make(llama_sampler_init(iface, reinterpret_cast<llama_sampler_context_t>(ctx)));
    s.state_->is_custom = true;
    s.state_->keepalive = std::move(keepalive);
    register_custom(s.state_->ptr, s.state_);
    return s;
}

llama_sampler * Sampler::get() const {
    if (state_->ptr == nullptr) {
        throw nb::value_error("the sampler was freed (by llama_sampler_free, or with the chain that owned it)");
    }
    return state_->ptr;
}

void Sampler::check_chain(const char * what) const {
    get();
    if (!state_->is_chain) {
        throw nb::value_error((std::string(what) + " needs a sampler chain (from llama_sampler_chain_init)").c_str());
    }
}

namespace {

// A context runs an attached chain in its graph: it must not change under it.
void check_not_attached(const std::shared_ptr<SamplerState> & st, const char * what) {
    for (auto p = st; p; p = p->parent.lock()) {
        if (p->attached) {
            throw nb::value_error((std::string(what) + ": the chain is attached to a context (llama_set_sampler); "
                                   "detach it first with llama_set_sampler(ctx, seq_id, None), or free the context").c_str());
        }
    }
}

}  // namespace

void Sampler::free() {
    get();
    if (state_->in_chain) {
        throw nb::value_error("this sampler belongs to a chain (llama_sampler_chain_add took ownership): "
                              "free the chain, or take it out with llama_sampler_chain_remove first");
    }
    check_not_attached(state_, "llama_sampler_free");
    check_sampler_idle(state_, "llama_sampler_free");
    BusyGuard busy(state_);  // free callbacks run: they must not free it again
    state_->release();
}

void Sampler::chain_add(Sampler & child) {
    check_chain("llama_sampler_chain_add");
    child.get();
    const auto & c = child.state_;
    check_not_attached(state_, "llama_sampler_chain_add");
    check_not_attached(c, "llama_sampler_chain_add");
    check_sampler_idle(state_, "llama_sampler_chain_add");
    check_sampler_idle(c, "llama_sampler_chain_add");
    if (c == state_) {
        throw nb::value_error("a sampler chain cannot be added to itself");
    }
    if (c->in_chain) {
        throw nb::value_error("this sampler was already added to a chain, which owns it");
    }
    // Adding an ancestor would make a cycle that llama.cpp frees twice.
    for (auto p = state_->parent.lock(); p; p = p->parent.lock()) {
        if (p == c) {
            throw nb::value_error("a chain cannot be added to a chain inside it");
        }
    }
    if (c->n_vocab > 0) {
        for (SamplerState * p = state_.get(); p != nullptr; p = p->parent.lock().get()) {
            if (p->n_vocab > 0 && p->n_vocab != c->n_vocab) {
                throw nb::value_error(("the sampler is for a vocabulary of " + std::to_string(c->n_vocab) +
                                       " tokens, the chain for one of " + std::to_string(p->n_vocab)).c_str());
            }
        }
        for (SamplerState * p = state_.get(); p != nullptr; p = p->parent.lock().get()) {
            p->n_vocab = c->n_vocab;
        }
    }
    llama_sampler_chain_add(state_->ptr, c->ptr);
    c->in_chain = true;
    c->parent = state_;
    state_->children.push_back(c);
}

Sampler Sampler::chain_get(int32_t i) const {
    check_chain("llama_sampler_chain_get");
    if (i == -1) {
        return Sampler(state_);
    }
    if (i < 0 || static_cast<size_t>(i) >= state_->children.size()) {
        throw nb::index_error(("sampler index " + std::to_string(i) + " is out of range for a chain of " +
                               std::to_string(state_->children.size())).c_str());
    }
    return Sampler(state_->children[static_cast<size_t>(i)]);
}

Sampler Sampler::chain_remove(int32_t i) {
    check_chain("llama_sampler_chain_remove");
    check_not_attached(state_, "llama_sampler_chain_remove");
    check_sampler_idle(state_, "llama_sampler_chain_remove");
    if (i < 0 || static_cast<size_t>(i) >= state_->children.size()) {
        throw nb::index_error(("sampler index " + std::to_string(i) + " is out of range for a chain of " +
                               std::to_string(state_->children.size())).c_str());
    }
    llama_sampler_chain_remove(state_->ptr, i);
    auto child = state_->children[static_cast<size_t>(i)];
    state_->children.erase(state_->children.begin() + i);
    child->in_chain = false;
    child->parent.reset();
    return Sampler(std::move(child));
}

int32_t Sampler::chain_n() const {
    check_chain("llama_sampler_chain_n");
    return llama_sampler_chain_n(state_->ptr);
}

bool Sampler::has_grammar() const { return any_grammar(*state_); }

void Sampler::probe_grammars(llama_token token) const {
    // every grammar in this sampler (a chain's members included) must allow the token
    std::vector<const SamplerState *> todo{state_.get()};
    while (!todo.empty()) {
        const SamplerState * st = todo.back();
        todo.pop_back();
        for (const auto & child : st->children) {
            todo.push_back(child.get());
        }
        if (!st->is_grammar || st->ptr == nullptr) {
            continue;
        }
        check_grammar_allows(st->ptr, token);
    }
}

void Sampler::accept(llama_token token) {
    llama_sampler * s = get();
    if (token < 0 || (state_->n_vocab > 0 && token >= state_->n_vocab)) {
        throw nb::value_error(("token id " + std::to_string(token) + " is out of range" +
                               (state_->n_vocab > 0 ? " [0, " + std::to_string(state_->n_vocab) + ")" : "")).c_str());
    }
    if (has_grammar()) {
        probe_grammars(token);
    }
    BusyGuard busy(state_);
    try {
        llama_sampler_accept(s, token);
    } catch (const std::exception & e) {
        throw GrammarFailure(std::string("the sampler rejected token ") + std::to_string(token) + ": " + e.what());
    }
}

llama_token Sampler::sample(Context & ctx, int32_t idx) {
    // Lock and wait for the decode's outputs first: both may release the GIL, and the
    // sampler must be checked after that.
    auto lk = ctx.lock_open();
    ctx.wait_for_outputs();
    llama_sampler * s = get();
    ctx.check_output_row(idx);
    const int32_t n_vocab = ctx.n_vocab();
    if (state_->n_vocab > 0 && state_->n_vocab != n_vocab) {
        throw nb::value_error(("the sampler is for a vocabulary of " + std::to_string(state_->n_vocab) +
                               " tokens, the context's model has " + std::to_string(n_vocab)).c_str());
    }
    llama_context * raw = ctx.get();
    // As llama_sampler_sample: a token sampled in the graph (llama_set_sampler) is taken as
    // it is; probabilities or logits the graph's samplers left are the candidates.
    const llama_token sampled = llama_get_sampled_token_ith(raw, idx);
    if (sampled != LLAMA_TOKEN_NULL) {
        if (sampler_has_custom(*state_)) {
            lk.unlock();
        }
        accept(sampled);
        return sampled;
    }
    std::vector<llama_token_data> candidates;
    const float * probs = llama_get_sampled_probs_ith(raw, idx);
    const float * logits = llama_get_sampled_logits_ith(raw, idx);
    if (probs != nullptr || logits != nullptr) {
        const size_t n = probs != nullptr ? llama_get_sampled_probs_count_ith(raw, idx) : llama_get_sampled_logits_count_ith(raw, idx);
        const uint32_t n_ids = llama_get_sampled_candidates_count_ith(raw, idx);
        const llama_token * ids = llama_get_sampled_candidates_ith(raw, idx);
        // without backend candidates llama.cpp's id list is every token id
        if (ids == nullptr || n > (n_ids > 0 ? static_cast<size_t>(n_ids) : static_cast<size_t>(n_vocab))) {
            throw nb::value_error("the backend samplers left candidates without their token ids");
        }
        candidates.resize(n);
        for (size_t k = 0; k < n; ++k) {
            candidates[k] = llama_token_data{ids[k], logits != nullptr ? logits[k] : 0.0f, probs != nullptr ? probs[k] : 0.0f};
        }
    } else {
        const float * row = llama_get_logits_ith(raw, idx);
        if (row == nullptr) {
            throw nb::value_error("the context has no logits for this output (is it an embeddings-only context?)");
        }
        candidates.resize(static_cast<size_t>(n_vocab));
        for (llama_token t = 0; t < n_vocab; ++t) {
            candidates[static_cast<size_t>(t)] = llama_token_data{t, row[t], 0.0f};
        }
    }
    if (candidates.empty()) {
        throw nb::value_error("the backend samplers left no candidates");
    }
    // The candidates are a copy: a custom sampler's Python callbacks run without the context's
    // lock, so that they may use the context themselves.
    BusyGuard busy(state_);
    if (sampler_has_custom(*state_)) {
        check_custom_apply();
        lk.unlock();
    }
    llama_token_data_array cur{candidates.data(), candidates.size(), -1, false};
    const bool grammar = has_grammar();
    try {
        llama_sampler_apply(s, &cur);
    } catch (const std::exception & e) {
        if (grammar) {
            throw GrammarFailure(std::string("the grammar failed: ") + e.what());
        }
        throw std::runtime_error(std::string("the sampler failed: ") + e.what());
    }
    if (cur.selected < 0 || static_cast<size_t>(cur.selected) >= cur.size) {
        throw nb::value_error("the sampler selected no token: a chain must end with a sampler that picks one "
                              "(greedy, dist, mirostat)");
    }
    const llama_token_data picked = cur.data[cur.selected];
    if (grammar && std::isinf(picked.logit) && picked.logit < 0) {
        throw GrammarFailure("the grammar allows no next token");
    }
    accept(picked.id);
    return picked.id;
}

Sampler Sampler::clone() const {
    llama_sampler * s = get();
    check_clonable(*state_);
    BusyGuard busy(state_);
    struct CloneScope {
        CloneScope() { ++g_clone_depth; }
        ~CloneScope() {
            if (--g_clone_depth == 0) {
                auto pending = std::move(clone_pending());  // handles dropped by the callbacks go now
                clone_pending().clear();
            }
        }
    } scope;
    llama_sampler * raw = llama_sampler_clone(s);
    std::unordered_set<const SamplerState *> taken;
    if (!check_clone(*state_, raw, taken)) {
        if (!clone_by_callback(*state_) && raw != nullptr) {
            detach_callback_clones(*state_, raw);
            llama_sampler_free(raw);
        }
        throw nb::value_error("a clone callback of a custom sampler returned NULL (or raised), or not the address of a "
                              "new sampler from llama_sampler_init (llama_sampler_init(...).address) that nothing owns");
    }
    if (raw == nullptr) {
        throw nb::value_error("llama.cpp could not clone the sampler");
    }
    auto st = mirror(*state_, raw);
    hold_while_cloning(st);
    return Sampler(std::move(st));
}

void Sampler::check_custom_apply() const {
    if (state_->is_custom && state_->ptr->iface->apply == nullptr) {
        throw nb::value_error("the custom sampler's llama_sampler_i has no apply callback (llama.cpp would abort)");
    }
}

std::string Sampler::name() const {
    llama_sampler * s = get();
    if (state_->is_custom && s->iface->name == nullptr) {
        return "(null)";  // llama.cpp would call NULL
    }
    BusyGuard busy(state_);
    const char * n = llama_sampler_name(s);
    return n != nullptr ? std::string(n) : std::string("(null)");
}

namespace {

ModelPtr vocab_model(const Vocab & vocab) { return vocab.model(); }

Sampler make_grammar(const Vocab & vocab, const std::string & grammar, const std::string & root, bool lazy,
                     const std::vector<std::string> & patterns, const std::vector<llama_token> & trigger_tokens) {
    for (llama_token t : trigger_tokens) {
        vocab.check_token(t);
    }
    llama_sampler * raw = init_grammar_sampler(vocab.get(), grammar, root, lazy, patterns, trigger_tokens);
    return Sampler::make(raw, vocab.n_tokens(), vocab_model(vocab), true);
}

// llama_sampler_copy of a custom sampler without copy_state clones src (llama.cpp aborts without
// clone callback if it has a ctx) and moves the clone's ctx into dst, deleting the clone: a
// sampler a Python clone callback returned would be deleted under its handle.
void check_copyable(const SamplerState & src) {
    if (src.is_custom && src.ptr->iface->copy_state == nullptr &&
        (src.ptr->iface->clone != nullptr || src.ptr->ctx != nullptr)) {
        throw nb::value_error("llama_sampler_copy of a custom sampler needs a copy_state callback in its llama_sampler_i "
                              "(unless it has neither ctx nor clone callback)");
    }
    for (const auto & child : src.children) {
        check_copyable(*child);
    }
}

// llama_sampler_copy asserts that both samplers (and a chain's members, pairwise) are of one type.
bool same_kind(const SamplerState & a, const SamplerState & b) {
    if (a.ptr == nullptr || b.ptr == nullptr || a.ptr->iface != b.ptr->iface || a.children.size() != b.children.size()) {
        return false;
    }
    for (size_t i = 0; i < a.children.size(); ++i) {
        if (!same_kind(*a.children[i], *b.children[i])) {
            return false;
        }
    }
    return true;
}

using TokenIds = nb::ndarray<nb::numpy, llama_token, nb::ndim<1>>;
using TokenFloats = nb::ndarray<nb::numpy, float, nb::ndim<1>>;

template <typename T, typename Array>
Array owned_array(const std::vector<T> & values) {
    auto * data = new T[values.size() > 0 ? values.size() : 1];
    std::copy(values.begin(), values.end(), data);
    nb::capsule owner(data, [](void * p) noexcept { delete[] static_cast<T *>(p); });
    return Array(data, {values.size()}, owner);
}

}  // namespace

void init_low_level_sampler(nb::module_ & m) {
    nb::class_<Sampler>(m, "Sampler",
        "One llama_sampler (or chain) for allama.llama_cpp. A sampler added to a chain belongs to it; "
        "a freed one raises ValueError when used.")
        // --- constructors, one per llama_sampler_init_* ---
        .def_static("chain", [](bool no_perf) {
            Sampler s = Sampler::make(llama_sampler_chain_init(llama_sampler_chain_params{no_perf}));
            s.state()->is_chain = true;
            s.state()->no_perf = no_perf;
            return s;
        }, nb::arg("no_perf") = true)
        .def_static("greedy", []() { return Sampler::make(llama_sampler_init_greedy()); })
        .def_static("custom", &Sampler::make_custom, nb::arg("iface"), nb::arg("iface_size"), nb::arg("ctx"),
                    nb::arg("keepalive"),
                    "llama_sampler_init: iface is the address of a ctypes llama_sampler_i of iface_size bytes; "
                    "keepalive is kept alive with the sampler.")
        .def_static("sizeof_iface", []() { return sizeof(llama_sampler_i); }, "sizeof(struct llama_sampler_i)")
        .def_static("dist", [](uint32_t seed) { return Sampler::make(llama_sampler_init_dist(seed)); }, nb::arg("seed"))
        .def_static("top_k", [](int32_t k) { return Sampler::make(llama_sampler_init_top_k(k)); }, nb::arg("k"))
        .def_static("top_p", [](float p, int64_t min_keep) {
            require_not_nan(p, "p");
            return Sampler::make(llama_sampler_init_top_p(p, min_keep_arg(min_keep)));
        }, nb::arg("p"), nb::arg("min_keep"))
        .def_static("min_p", [](float p, int64_t min_keep) {
            require_not_nan(p, "p");
            return Sampler::make(llama_sampler_init_min_p(p, min_keep_arg(min_keep)));
        }, nb::arg("p"), nb::arg("min_keep"))
        .def_static("typical", [](float p, int64_t min_keep) {
            require_not_nan(p, "p");
            return Sampler::make(llama_sampler_init_typical(p, min_keep_arg(min_keep)));
        }, nb::arg("p"), nb::arg("min_keep"))
        .def_static("temp", [](float t) {
            require_not_nan(t, "t");
            return Sampler::make(llama_sampler_init_temp(t));
        }, nb::arg("t"))
        .def_static("temp_ext", [](float t, float delta, float exponent) {
            require_not_nan(t, "t");
            require_finite(delta, "delta");
            require_finite(exponent, "exponent");
            return Sampler::make(llama_sampler_init_temp_ext(t, delta, exponent));
        }, nb::arg("t"), nb::arg("delta"), nb::arg("exponent"))
        .def_static("xtc", [](float p, float t, int64_t min_keep, uint32_t seed) {
            require_not_nan(p, "p");
            require_not_nan(t, "t");
            return Sampler::make(llama_sampler_init_xtc(p, t, min_keep_arg(min_keep), seed));
        }, nb::arg("p"), nb::arg("t"), nb::arg("min_keep"), nb::arg("seed"))
        .def_static("top_n_sigma", [](float n) {
            require_not_nan(n, "n");
            return Sampler::make(llama_sampler_init_top_n_sigma(n));
        }, nb::arg("n"))
        .def_static("mirostat", [](int32_t n_vocab, uint32_t seed, float tau, float eta, int32_t m) {
            require(n_vocab > 0, "n_vocab must be > 0");
            require(m >= 1, "m must be >= 1");
            require_finite(tau, "tau");
            require_finite(eta, "eta");
            return Sampler::make(llama_sampler_init_mirostat(n_vocab, seed, tau, eta, m), n_vocab);
        }, nb::arg("n_vocab"), nb::arg("seed"), nb::arg("tau"), nb::arg("eta"), nb::arg("m"))
        .def_static("mirostat_v2", [](uint32_t seed, float tau, float eta) {
            require_finite(tau, "tau");
            require_finite(eta, "eta");
            return Sampler::make(llama_sampler_init_mirostat_v2(seed, tau, eta));
        }, nb::arg("seed"), nb::arg("tau"), nb::arg("eta"))
        .def_static("grammar", [](const Vocab & vocab, const std::string & grammar, const std::string & root) {
            return make_grammar(vocab, grammar, root, false, {}, {});
        }, nb::arg("vocab"), nb::arg("grammar_str"), nb::arg("grammar_root"),
           "A GBNF grammar sampler; GrammarError when the grammar does not parse (an empty grammar allows everything).")
        .def_static("grammar_lazy_patterns", [](const Vocab & vocab, const std::string & grammar, const std::string & root,
                                                const std::vector<std::string> & patterns, const std::vector<llama_token> & tokens) {
            require(!grammar.empty(), "a lazy grammar needs grammar text");
            return make_grammar(vocab, grammar, root, true, patterns, tokens);
        }, nb::arg("vocab"), nb::arg("grammar_str"), nb::arg("grammar_root"), nb::arg("trigger_patterns"),
           nb::arg("trigger_tokens"))
        .def_static("penalties", [](int32_t n_vocab, int32_t last_n, float repeat, float freq, float present) {
            require(n_vocab > 0, "n_vocab must be > 0");
            require(std::isfinite(repeat) && repeat > 0.0f, "penalty_repeat must be a finite number > 0");
            require_finite(freq, "penalty_freq");
            require_finite(present, "penalty_present");
            return Sampler::make(llama_sampler_init_penalties(n_vocab, last_n, repeat, freq, present), n_vocab);
        }, nb::arg("n_vocab"), nb::arg("penalty_last_n"), nb::arg("penalty_repeat"), nb::arg("penalty_freq"),
           nb::arg("penalty_present"))
        .def_static("dry", [](const Vocab & vocab, float multiplier, float base, int32_t allowed_length, int32_t penalty_last_n,
                              const std::vector<std::string> & breakers) {
            require(std::isfinite(multiplier) && multiplier >= 0.0f, "dry_multiplier must be a finite number >= 0");
            require_finite(base, "dry_base");
            require(allowed_length >= 0, "dry_allowed_length must be >= 0");
            std::vector<const char *> c_breakers;
            for (const auto & b : breakers) {
                c_breakers.push_back(b.c_str());
            }
            return Sampler::make(llama_sampler_init_dry(vocab.get(), multiplier, base, allowed_length, penalty_last_n,
                                                        c_breakers.data(), c_breakers.size()),
                                 vocab.n_tokens(), vocab_model(vocab));
        }, nb::arg("vocab"), nb::arg("dry_multiplier"), nb::arg("dry_base"), nb::arg("dry_allowed_length"),
           nb::arg("dry_penalty_last_n"), nb::arg("seq_breakers"))
        .def_static("logit_bias", [](int32_t n_vocab, const std::vector<std::pair<llama_token, float>> & biases) {
            require(n_vocab > 0, "n_vocab must be > 0");
            std::vector<llama_logit_bias> c_biases;
            for (const auto & [token, bias] : biases) {
                require(token >= 0 && token < n_vocab, "logit bias token id " + std::to_string(token) +
                                                           " is out of range [0, " + std::to_string(n_vocab) + ")");
                require_not_nan(bias, "a logit bias");
                c_biases.push_back({token, bias});
            }
            return Sampler::make(llama_sampler_init_logit_bias(n_vocab, static_cast<int32_t>(c_biases.size()), c_biases.data()),
                                 n_vocab);
        }, nb::arg("n_vocab"), nb::arg("logit_bias"), "logit_bias: (token, bias) pairs.")
        .def_static("adaptive_p", [](float target, float decay, uint32_t seed) {
            require_not_nan(target, "target");
            require(std::isfinite(decay) && decay >= 0.0f && decay <= 0.99f, "decay must be in [0, 0.99]");
            return Sampler::make(llama_sampler_init_adaptive_p(std::min(target, 1.0f), decay, seed));
        }, nb::arg("target"), nb::arg("decay"), nb::arg("seed"))
        .def_static("infill", [](const Vocab & vocab) {
            return Sampler::make(llama_sampler_init_infill(vocab.get()), vocab.n_tokens(), vocab_model(vocab));
        }, nb::arg("vocab"))
        // --- use ---
        .def("apply", [](Sampler & s, nb::ndarray<const llama_token, nb::ndim<1>, nb::device::cpu> ids,
                         nb::ndarray<const float, nb::ndim<1>, nb::device::cpu> logits,
                         nb::ndarray<const float, nb::ndim<1>, nb::device::cpu> probs, int64_t selected, bool sorted) {
            llama_sampler * raw = s.get();
            s.check_custom_apply();
            const size_t n = ids.shape(0);
            require(n > 0, "the token data array is empty");
            require(logits.shape(0) == n && probs.shape(0) == n, "ids, logits and p must have one length");
            require(selected >= -1 && selected < static_cast<int64_t>(n), "selected must be -1 or an index into the data");
            const int32_t n_vocab = s.state()->n_vocab;
            std::vector<llama_token_data> data(n);
            for (size_t i = 0; i < n; ++i) {
                const llama_token id = ids(i);
                require(id >= 0 && (n_vocab <= 0 || id < n_vocab),
                        "token id " + std::to_string(id) + " at index " + std::to_string(i) + " is out of range" +
                            (n_vocab > 0 ? " [0, " + std::to_string(n_vocab) + ")" : ""));
                data[i] = llama_token_data{id, logits(i), probs(i)};
            }
            llama_token_data_array cur{data.data(), n, selected, sorted};
            BusyGuard busy(s.state());
            try {
                llama_sampler_apply(raw, &cur);
            } catch (const std::exception & e) {
                throw std::runtime_error(std::string("the sampler failed: ") + e.what());
            }
            std::vector<llama_token> out_ids(cur.size);
            std::vector<float> out_logits(cur.size), out_p(cur.size);
            for (size_t i = 0; i < cur.size; ++i) {
                out_ids[i] = cur.data[i].id;
                out_logits[i] = cur.data[i].logit;
                out_p[i] = cur.data[i].p;
            }
            return nb::make_tuple(owned_array<llama_token, TokenIds>(out_ids), owned_array<float, TokenFloats>(out_logits),
                                  owned_array<float, TokenFloats>(out_p), cur.selected, cur.sorted);
        }, nb::arg("ids"), nb::arg("logits"), nb::arg("p"), nb::arg("selected"), nb::arg("sorted"),
           "llama_sampler_apply on a copy of the candidates: (ids, logits, p, selected, sorted) afterwards.")
        .def("copy_from", [](Sampler & dst, const Sampler & src) {
            dst.get();
            src.get();
            if (!same_kind(*src.state(), *dst.state())) {
                throw nb::value_error("llama_sampler_copy needs two samplers of the same type (chains: the same members)");
            }
            check_copyable(*src.state());
            check_sampler_idle(dst.state(), "llama_sampler_copy");
            BusyGuard busy_src(src.state());
            BusyGuard busy_dst(dst.state());
            llama_sampler_copy(src.get(), dst.get());
        }, nb::arg("src"), "llama_sampler_copy(src, self): take src's state.")
        .def("add", &Sampler::chain_add, nb::arg("smpl"), "llama_sampler_chain_add: the chain takes ownership of smpl.")
        .def("get", &Sampler::chain_get, nb::arg("i"), "A handle to the chain's i-th sampler (still owned by the chain); -1: the chain.")
        .def("remove", &Sampler::chain_remove, nb::arg("i"), "Take the i-th sampler out of the chain; the caller owns it again.")
        .def_prop_ro("n", &Sampler::chain_n, "Samplers in the chain.")
        .def_prop_ro("name", &Sampler::name, "llama_sampler_name; \"(null)\" for a custom sampler without name.")
        .def_prop_ro("address", [](const Sampler & s) { return reinterpret_cast<uintptr_t>(s.get()); },
                     "The raw struct llama_sampler * (what a custom sampler's clone callback returns).")
        .def_prop_ro("is_custom", [](const Sampler & s) { return s.state()->is_custom; })
        .def_prop_ro("is_chain", [](const Sampler & s) { return s.state()->is_chain; })
        .def_prop_ro("freed", [](const Sampler & s) { return s.state()->ptr == nullptr; })
        .def_prop_ro("in_chain", [](const Sampler & s) { return s.state()->in_chain; }, "Owned by a chain.")
        .def_prop_ro("n_vocab", [](const Sampler & s) { return s.state()->n_vocab; }, "The vocabulary size it is for; 0 if any.")
        .def_prop_ro("seed", [](const Sampler & s) { return llama_sampler_get_seed(s.get()); })
        .def("accept", &Sampler::accept, nb::arg("token"),
             "Feed a token (GrammarError if a grammar in the sampler does not allow it).")
        .def("reset", [](Sampler & s) {
            llama_sampler * raw = s.get();
            BusyGuard busy(s.state());
            llama_sampler_reset(raw);
        })
        .def("clone", &Sampler::clone, "An independent copy with the same state.")
        .def("free", &Sampler::free, "llama_sampler_free; a sampler owned by a chain cannot be freed on its own.")
        .def("sample", &Sampler::sample, nb::arg("ctx"), nb::arg("idx"),
             "llama_sampler_sample: pick a token from an output row of the last decode and accept it.")
        .def("perf", [](const Sampler & s) {
            s.get();
            if (!s.state()->is_chain) {
                throw nb::value_error("sampler performance data needs a sampler chain");
            }
            const llama_perf_sampler_data d = llama_perf_sampler(s.get());
            return std::make_pair(d.t_sample_ms, d.n_sample);
        }, "(t_sample_ms, n_sample) of a chain.")
        .def("perf_print", [](const Sampler & s) {
            s.get();
            if (!s.state()->is_chain) {
                throw nb::value_error("sampler performance data needs a sampler chain");
            }
            llama_perf_sampler_print(s.get());
        })
        .def("perf_reset", [](Sampler & s) {
            s.get();
            if (!s.state()->is_chain) {
                throw nb::value_error("sampler performance data needs a sampler chain");
            }
            llama_perf_sampler_reset(s.get());
        })
        .def("__eq__", [](const Sampler & a, nb::handle b) {
            return nb::isinstance<Sampler>(b) && nb::cast<const Sampler &>(b).state() == a.state();
        })
        .def("__hash__", [](const Sampler & s) { return reinterpret_cast<uintptr_t>(s.state().get()); });
}

}  // namespace allama
