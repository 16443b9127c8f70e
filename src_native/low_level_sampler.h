// Sampler: one llama_sampler (a single sampler or a chain of them) for the
// low-level API (allama.llama_cpp), with llama.cpp's ownership rules made safe:
// a sampler added to a chain belongs to the chain, a freed one raises on use.
#pragma once

#include <nanobind/nanobind.h>

#include "model.h"

#include <memory>
#include <string>
#include <vector>

namespace allama {

class Context;

// What a Python handle and its chain share about one llama_sampler.
struct SamplerState {
    ~SamplerState();

    llama_sampler * ptr = nullptr;  // null once freed (by llama_sampler_free or with its chain)
    bool in_chain = false;          // owned by the chain `parent`; not freeable on its own
    bool is_chain = false;
    bool is_grammar = false;
    bool no_perf = true;            // chains only
    bool attached = false;          // attached to a context by llama_set_sampler (chains only)
    bool backend_initialized = false;  // llama.cpp ran its backend_init: it asserts on a second one
    bool is_custom = false;         // from llama_sampler_init: its iface is a Python (ctypes) llama_sampler_i
    int busy = 0;                   // roots only: native calls in flight that may run Python callbacks
    nanobind::object keepalive;     // custom samplers: the ctypes iface struct (and ctx) llama.cpp points into
    int32_t n_vocab = 0;            // 0 when the sampler does not know its vocabulary
    ModelPtr model;                 // keeps the vocabulary of grammar/dry/infill samplers alive
    std::weak_ptr<SamplerState> parent;
    std::vector<std::shared_ptr<SamplerState>> children;  // chains only, in chain order

    // Frees the llama_sampler (and a chain's members) and marks the whole tree freed.
    void release();
    void mark_freed();
    // Custom samplers: forget the raw pointer and let go of the Python iface (GIL taken).
    void drop_custom();
};

// Raises ValueError while a native call on the tree of `st` may be running Python callbacks
// (a custom sampler's): the tree must not be freed or restructured under it.
void check_sampler_idle(const std::shared_ptr<SamplerState> & st, const char * what);
// True when `st` or a sampler in it is a custom (llama_sampler_init) one.
bool sampler_has_custom(const SamplerState & st);

class Sampler {
public:
    explicit Sampler(std::shared_ptr<SamplerState> state) : state_(std::move(state)) {}

    // Wraps a fresh llama_sampler; throws if llama.cpp returned null.
    static Sampler make(llama_sampler * raw, int32_t n_vocab = 0, ModelPtr model = nullptr, bool is_grammar = false);
    // llama_sampler_init(iface, ctx) for a ctypes llama_sampler_i at `iface` (of `iface_size` bytes);
    // `keepalive` holds the Python objects llama.cpp will point into for the sampler's lifetime.
    static Sampler make_custom(uintptr_t iface, size_t iface_size, uintptr_t ctx, nanobind::object keepalive);

    // The live llama_sampler; raises ValueError once freed.
    llama_sampler * get() const;
    const std::shared_ptr<SamplerState> & state() const { return state_; }

    void free();
    void chain_add(Sampler & child);
    Sampler chain_get(int32_t i) const;
    Sampler chain_remove(int32_t i);
    int32_t chain_n() const;
    // Feeds a token to the sampler; refuses tokens outside the vocabulary or that a
    // grammar in it does not allow (llama.cpp would abort or corrupt the grammar).
    void accept(llama_token token);
    // llama_sampler_sample with validation: the output row, the vocabulary, and a chain
    // that selects no token all raise instead of aborting.
    llama_token sample(Context & ctx, int32_t idx);
    Sampler clone() const;
    // llama_sampler_name; "(null)" where a custom sampler has no name callback or it returns NULL.
    std::string name() const;
    // A custom sampler without apply callback: ValueError (llama.cpp asserts).
    void check_custom_apply() const;

private:
    void check_chain(const char * what) const;
    bool has_grammar() const;
    void probe_grammars(llama_token token) const;

    std::shared_ptr<SamplerState> state_;
};

void init_low_level_sampler(nanobind::module_ & m);

}  // namespace allama
