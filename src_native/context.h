// Context: a llama_context (KV memory, decode/encode, logits, state) over a Model.
#pragma once

#include <nanobind/nanobind.h>

#include "batch.h"
#include "cpu_thread_pool.h"
#include "model.h"

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace allama {

class Sampler;
struct SamplerState;

// The llama_context_params fields Python sets, declared once: X(type, name, docstring) each.
// The struct, its defaults (llama.cpp's, except the thread counts: this machine's cores, and
// no_perf: off, the engine reads the perf counters), the conversion to llama_context_params
// and the Python bindings are all made from this list. Enum fields are llama.cpp's integer
// values (-1: the model's), range-checked when a Context is made.
#define ALLAMA_CONTEXT_PARAMS(X)                                                                  \
    X(uint32_t, n_ctx, "KV cache cells; 0 takes the model's training context.")                 \
    X(uint32_t, n_batch, "Most tokens one decode() call may take.")                             \
    X(uint32_t, n_ubatch, "Physical batch size.")                                               \
    X(uint32_t, n_seq_max, "Distinct sequence ids.")                                            \
    X(int32_t, n_threads, "Threads for single-token decodes.")                                  \
    X(int32_t, n_threads_batch, "Threads for batches (prompts).")                                \
    X(int32_t, rope_scaling_type, "llama_rope_scaling_type; -1 the model's.")                   \
    X(int32_t, pooling_type, "llama_pooling_type; -1 the model's.")                             \
    X(int32_t, attention_type, "llama_attention_type; -1 the model's.")                         \
    X(int32_t, flash_attn_type, "-1 auto, 0 disabled, 1 enabled.")                              \
    X(float, rope_freq_base, "RoPE base frequency; 0 the model's.")                             \
    X(float, rope_freq_scale, "RoPE frequency scale; 0 the model's.")                           \
    X(float, yarn_ext_factor, "YaRN extrapolation mix factor; negative the model's.")           \
    X(float, yarn_attn_factor, "YaRN magnitude scale.")                                         \
    X(float, yarn_beta_fast, "YaRN low correction dim.")                                        \
    X(float, yarn_beta_slow, "YaRN high correction dim.")                                       \
    X(uint32_t, yarn_orig_ctx, "YaRN original context size; 0 the model's.")                    \
    X(int32_t, type_k, "ggml type of the K cache (1 = F16).")                                   \
    X(int32_t, type_v, "ggml type of the V cache (1 = F16).")                                   \
    X(bool, embeddings, "Extract embeddings (pooled per the pooling type).")                    \
    X(bool, offload_kqv, "Keep the KV cache and its attention on the GPU.")                     \
    X(bool, no_perf, "Do not measure performance timings.")                                     \
    X(bool, op_offload, "Offload host tensor operations to the device.")                        \
    X(bool, swa_full, "A full-size cache for sliding-window attention.")                        \
    X(bool, kv_unified, "One KV buffer shared by all sequences (lets seq_cp share prefixes).")

struct ContextParams {
    ContextParams();
#define ALLAMA_DECLARE_FIELD(type, name, doc) type name;
    ALLAMA_CONTEXT_PARAMS(ALLAMA_DECLARE_FIELD)
#undef ALLAMA_DECLARE_FIELD
    // The same values as llama.cpp takes them (no callbacks set).
    llama_context_params to_llama() const;
};

class Context {
public:
    Context(const Model & model, const ContextParams & params);
    ~Context();
    Context(const Context &) = delete;
    Context & operator=(const Context &) = delete;

    // The raw context; throws UseAfterClose after close(). Callers hold lock().
    llama_context * get() const;
    std::unique_lock<std::mutex> lock();
    // lock(), then raise UseAfterClose if the context is closed.
    std::unique_lock<std::mutex> lock_open();
    void close();
    bool closed() const { return ctx_ == nullptr; }

    void decode(const Batch & batch);
    void encode(const Batch & batch);
    // llama_process on an extended batch made for this context: returns 0, 1 (no KV slot)
    // or 2 (aborted) as C; an invalid batch raises ValueError, other failures DecodeError.
    int32_t process(int32_t type, BatchExt & batch);
    // llama_set_sampler: attaches a sampler chain to run in the graph for `seq_id` (null
    // detaches). The context keeps the chain alive while attached, and the chain refuses to be
    // freed or changed meanwhile; llama.cpp initialises a chain for the backend only once.
    bool set_sampler(llama_seq_id seq_id, const Sampler * smpl);
    // Test hook: the next `count` decodes of a batch holding `seq_id` (-1: any batch) fail
    // with a fatal status before llama.cpp runs, as a failing backend would.
    void inject_decode_failures(llama_seq_id seq_id, int32_t count);

    // Waits, with the GIL released, until the last decode's outputs are there. On a backend
    // that computes asynchronously (a GPU), llama_decode returns before then and the first
    // read of an output waits for the compute: done with the GIL held, that wait would stop
    // every other Python thread (the event loop with it). Callers hold lock_open() and the GIL.
    void wait_for_outputs();
    // Test hook: the next wait_for_outputs() also sleeps `seconds` (the GIL released), as a
    // decode still computing on a GPU would make it wait.
    void inject_output_wait(double seconds);

    // Validates an output row index as llama_get_logits_ith() reads it:
    // i >= 0 is a batch index that requested output, i < 0 counts back from the last output.
    void check_output_row(int32_t i) const;
    void check_seq_id(llama_seq_id seq_id, bool allow_any = false) const;

    const ModelPtr & model() const { return model_; }
    const std::shared_ptr<RpcRelays> & rpc_relays() const { return rpc_relays_; }
    int32_t n_vocab() const { return n_vocab_; }
    bool kv_unified() const { return kv_unified_; }
    int32_t n_outputs() const { return n_outputs_; }
    void request_abort() { abort_requested_.store(true); }
    // llama_set_abort_callback: `callback(data)` is called (with the GIL) while llama.cpp
    // computes; a true result aborts the decode. None removes it. Costs nothing when unset.
    void set_abort_callback(nanobind::object callback, nanobind::object data);
    // llama_set_n_threads; the context's worker pool is remade to the larger count.
    void set_threads(int32_t n_threads, int32_t n_threads_batch);
    // Turns embedding output on or off; refuses a combination llama.cpp would abort on.
    void set_embeddings(bool on);
    // After a decode done outside decode() (through mtmd, holding lock_open()): the last
    // batch had `n_outputs` output rows, its last tokens (0 or 1 in practice).
    void recorded_external_decode(int32_t n_outputs);

private:
    void check_batch(const Batch & batch) const;
    void detach_samplers();
    // decode() and encode(): validate, run `run` with the GIL released, record or raise.
    template <typename Run>
    void evaluate(const Batch & batch, const char * what, Run run);
    bool take_injected_failure(const Batch & batch);
    void record_outputs(const Batch & batch);
    static bool abort_callback(void * data);

    // Frees the llama_context, then its worker pool.
    void free_context();
    // Raises WorkerLost, with no outputs kept, when an RPC worker holding layers was lost.
    void fail_if_worker_lost(const char * what);

    ModelPtr model_;
    std::shared_ptr<RpcRelays> rpc_relays_;  // null for a local model
    llama_context * ctx_ = nullptr;
    std::unique_ptr<CpuThreadPool> thread_pool_;  // outlives ctx_
    std::vector<std::unique_ptr<CpuThreadPool>> retired_thread_pools_;  // replaced by set_threads, freed with ctx_
    // The Python abort callback; read and written only with the GIL held.
    nanobind::object abort_cb_;
    nanobind::object abort_cb_data_;
    std::atomic<bool> has_abort_cb_{false};
    // The thread running the Python abort callback: it must not wait for mu_, which its
    // own decode holds.
    std::atomic<std::thread::id> callback_thread_{};
    std::mutex mu_;
    std::atomic<bool> abort_requested_{false};
    std::vector<int8_t> last_outputs_;  // output flags of the last decoded batch
    int32_t n_outputs_ = 0;
    int32_t n_vocab_ = 0;
    uint32_t n_seq_max_ = 0;
    bool kv_unified_ = true;  // false: one KV stream per sequence
    bool mean_pooling_unbatchable_ = false;  // see check_mean_pooling in context.cpp
    std::vector<LoraPtr> adapters_;     // keeps applied adapters alive
    std::map<llama_seq_id, std::shared_ptr<SamplerState>> samplers_;  // llama_set_sampler's, kept alive
    llama_seq_id failing_seq_ = -1;     // inject_decode_failures: which batches fail
    double output_wait_for_test_ = 0.0;  // inject_output_wait: seconds the next wait also takes
    int32_t failures_left_ = 0;

    friend void init_context(nanobind::module_ & m);
};

void init_context(nanobind::module_ & m);

}  // namespace allama
