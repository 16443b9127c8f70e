#include "context.h"

#include "errors.h"
#include "logging.h"
#include "low_level_sampler.h"

#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "ggml.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <sys/stat.h>
#include <string>
#include <thread>

namespace nb = nanobind;

namespace allama {

namespace {

using FloatArray = nb::ndarray<nb::numpy, float>;

int32_t default_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 4 : static_cast<int32_t>(n);
}

// Copies `n` floats into a new NumPy array that owns its memory.
FloatArray to_numpy(const float * src, size_t rows, size_t cols, bool two_dim) {
    auto * data = new float[rows * cols];
    std::memcpy(data, src, sizeof(float) * rows * cols);
    nb::capsule owner(data, [](void * p) noexcept { delete[] static_cast<float *>(p); });
    if (two_dim) {
        return FloatArray(data, {rows, cols}, owner);
    }
    return FloatArray(data, {cols}, owner);
}

void check_ggml_type(int32_t type, const char * name) {
    if (type < 0 || type >= GGML_TYPE_COUNT || ggml_type_size(static_cast<ggml_type>(type)) == 0) {
        throw nb::value_error((std::string(name) + " is not a valid ggml type: " + std::to_string(type)).c_str());
    }
}

nb::bytes to_bytes(const std::vector<uint8_t> & v) { return nb::bytes(v.data(), v.size()); }

// Room for a session file's tokens: the caller's capacity, but never more than the file
// could hold, so that a huge capacity does not allocate a huge buffer.
size_t token_buffer_size(const std::string & path, size_t capacity) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0 || st.st_size < 0) {
        return 0;
    }
    return std::min(capacity, static_cast<size_t>(st.st_size) / sizeof(llama_token));
}

// The llama_state_seq_flags this build knows: PARTIAL_ONLY (1) and ON_DEVICE (2).
void check_state_flags(uint32_t flags) {
    if ((flags & ~uint32_t{LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY | LLAMA_STATE_SEQ_FLAGS_ON_DEVICE}) != 0) {
        throw nb::value_error(("unknown llama_state_seq_flags bits: " + std::to_string(flags)).c_str());
    }
}

}  // namespace

ContextParams::ContextParams() {
    const llama_context_params d = llama_context_default_params();
#define ALLAMA_DEFAULT_FIELD(type, name, doc) name = static_cast<type>(d.name);
    ALLAMA_CONTEXT_PARAMS(ALLAMA_DEFAULT_FIELD)
#undef ALLAMA_DEFAULT_FIELD
    n_threads = default_threads();
    n_threads_batch = default_threads();
    no_perf = false;  // the engine reads llama.cpp's perf counters
}

llama_context_params ContextParams::to_llama() const {
    llama_context_params cp = llama_context_default_params();
#define ALLAMA_COPY_FIELD(type, name, doc) cp.name = static_cast<decltype(cp.name)>(name);
    ALLAMA_CONTEXT_PARAMS(ALLAMA_COPY_FIELD)
#undef ALLAMA_COPY_FIELD
    return cp;
}

Context::Context(const Model & model, const ContextParams & p) : model_(model.ptr()), rpc_relays_(model.rpc_relays()) {
    if (model.vocab_only()) {
        throw nb::value_error("cannot create a context: the model was loaded with vocab_only=True");
    }
    if (p.n_batch < 1 || p.n_ubatch < 1) {
        throw nb::value_error("n_batch and n_ubatch must be at least 1");
    }
    if (p.n_seq_max < 1 || p.n_seq_max > llama_max_parallel_sequences()) {
        throw nb::value_error(("n_seq_max must be in [1, " + std::to_string(llama_max_parallel_sequences()) + "]").c_str());
    }
    if (p.n_threads < 1 || p.n_threads_batch < 1) {
        throw nb::value_error("n_threads and n_threads_batch must be at least 1");
    }
    if (p.pooling_type < LLAMA_POOLING_TYPE_UNSPECIFIED || p.pooling_type > LLAMA_POOLING_TYPE_RANK) {
        throw nb::value_error("pooling_type must be -1 (model's), 0 none, 1 mean, 2 cls, 3 last or 4 rank");
    }
    if (p.attention_type < LLAMA_ATTENTION_TYPE_UNSPECIFIED || p.attention_type > LLAMA_ATTENTION_TYPE_NON_CAUSAL) {
        throw nb::value_error("attention_type must be -1 (model's), 0 causal or 1 non-causal");
    }
    if (p.rope_scaling_type < LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED || p.rope_scaling_type > LLAMA_ROPE_SCALING_TYPE_MAX_VALUE) {
        throw nb::value_error("rope_scaling_type is out of range");
    }
    if (p.flash_attn_type < LLAMA_FLASH_ATTN_TYPE_AUTO || p.flash_attn_type > LLAMA_FLASH_ATTN_TYPE_ENABLED) {
        throw nb::value_error("flash_attn_type must be -1 (auto), 0 (disabled) or 1 (enabled)");
    }
    check_ggml_type(p.type_k, "type_k");
    check_ggml_type(p.type_v, "type_v");

    llama_context_params cp = p.to_llama();
    // Embeddings are turned on after creation (set_embeddings below): llama.cpp reserves
    // its graphs at creation, and with pooling on it can abort there already.
    cp.embeddings = false;
    cp.abort_callback = &Context::abort_callback;
    cp.abort_callback_data = this;

    std::string reason;
    {
        LogCapture capture;
        {
            nb::gil_scoped_release release;
            auto rpc_turn = one_call_at_a_time(rpc_relays_);
            try {
                ctx_ = llama_init_from_model(model_.get(), cp);
            } catch (const std::exception & e) {
                reason = e.what();
            }
        }
        if (ctx_ == nullptr && reason.empty()) {
            reason = capture.message("llama.cpp gave no reason");
        }
    }
    if (rpc_relays_ && rpc_relays_->loss()) {  // a context made through a lost worker is no use
        free_context();
        check_rpc_relays(rpc_relays_, "creating a context");
    }
    if (ctx_ == nullptr) {
        throw nb::value_error(("failed to create a llama.cpp context: " + reason).c_str());
    }
    n_vocab_ = llama_vocab_n_tokens(llama_model_get_vocab(model_.get()));
    n_seq_max_ = llama_n_seq_max(ctx_);
    kv_unified_ = p.kv_unified;
    // llama.cpp aborts the process (GGML_ASSERT in the mean-pooling matmul) when it decodes
    // with mean pooling and n_ubatch is not a multiple of n_seq_max: refuse that up front.
    mean_pooling_unbatchable_ = llama_pooling_type(ctx_) == LLAMA_POOLING_TYPE_MEAN &&
                                llama_n_ubatch(ctx_) % n_seq_max_ != 0;
    if (p.embeddings && mean_pooling_unbatchable_) {
        const uint32_t n_ubatch = llama_n_ubatch(ctx_);
        llama_free(ctx_);
        ctx_ = nullptr;
        throw nb::value_error(("mean pooling needs n_ubatch (" + std::to_string(n_ubatch) +
                               ") to be a multiple of n_seq_max (" + std::to_string(n_seq_max_) + ")").c_str());
    }
    llama_set_embeddings(ctx_, p.embeddings);
    thread_pool_ = CpuThreadPool::attach(ctx_, p.n_threads, p.n_threads_batch);
}

void Context::fail_if_worker_lost(const char * what) {
    if (rpc_relays_ && rpc_relays_->loss()) {  // outputs computed through it are garbage, whatever the status
        last_outputs_.clear();
        n_outputs_ = 0;
        check_rpc_relays(rpc_relays_, what);
    }
}

void Context::free_context() {
    if (ctx_ != nullptr) {
        llama_free(ctx_);
        ctx_ = nullptr;
    }
    thread_pool_.reset();
    retired_thread_pools_.clear();
}

void Context::set_threads(int32_t n_threads, int32_t n_threads_batch) {
    if (n_threads < 1 || n_threads_batch < 1) {
        throw nb::value_error("thread counts must be at least 1");
    }
    auto lk = lock_open();
    if (llama_n_threads(ctx_) != n_threads || llama_n_threads_batch(ctx_) != n_threads_batch) {
        // ggml's CPU backend pauses the old pool when the next graph switches away from it, so
        // it is freed only with the context
        if (thread_pool_) {
            llama_detach_threadpool(ctx_);
            retired_thread_pools_.push_back(std::move(thread_pool_));
        }
        thread_pool_ = CpuThreadPool::attach(ctx_, n_threads, n_threads_batch);
    }
    llama_set_n_threads(ctx_, n_threads, n_threads_batch);
}

void Context::set_embeddings(bool on) {
    auto lk = lock_open();
    if (on && mean_pooling_unbatchable_) {
        throw nb::value_error(("mean pooling needs n_ubatch (" + std::to_string(llama_n_ubatch(ctx_)) +
                               ") to be a multiple of n_seq_max (" + std::to_string(n_seq_max_) + ")").c_str());
    }
    llama_set_embeddings(ctx_, on);
}

Context::~Context() {
    free_context();
    detach_samplers();
}

void Context::detach_samplers() {
    // after llama_free: the samplers may be freed (or attached elsewhere) from now on
    for (auto & entry : samplers_) {
        entry.second->attached = false;
    }
    samplers_.clear();
}

bool Context::abort_callback(void * data) {
    auto * self = static_cast<Context *>(data);
    if (self->abort_requested_.load(std::memory_order_relaxed)) {
        return true;
    }
    if (!self->has_abort_cb_.load(std::memory_order_acquire)) {
        return false;
    }
    // Only now take the GIL: the decode released it, so this cannot deadlock against the
    // thread that started the decode; the callback may not use this context (lock() refuses).
    nb::gil_scoped_acquire gil;
    nb::object callback = self->abort_cb_;
    if (!callback.is_valid() || callback.is_none()) {
        return false;
    }
    self->callback_thread_.store(std::this_thread::get_id());
    bool abort = false;
    try {
        nb::object result = callback(self->abort_cb_data_);
        const int truth = PyObject_IsTrue(result.ptr());
        if (truth < 0) {
            throw nb::python_error();
        }
        abort = truth != 0;
    } catch (nb::python_error & e) {
        e.discard_as_unraisable("the llama_set_abort_callback callback");  // ctypes' rule: report, go on
    } catch (const std::exception & e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
        nb::python_error err;
        err.discard_as_unraisable("the llama_set_abort_callback callback");
    }
    self->callback_thread_.store(std::thread::id{});
    return abort;
}

void Context::set_abort_callback(nb::object callback, nb::object data) {
    if (callback.is_valid() && !callback.is_none() && !PyCallable_Check(callback.ptr())) {
        throw nb::type_error("abort_callback must be callable (or None to remove it)");
    }
    auto lk = lock_open();
    has_abort_cb_.store(false, std::memory_order_release);
    if (callback.is_valid() && !callback.is_none()) {
        abort_cb_ = std::move(callback);
        abort_cb_data_ = data.is_valid() ? std::move(data) : nb::none();
        has_abort_cb_.store(true, std::memory_order_release);
    } else {
        abort_cb_ = nb::object();
        abort_cb_data_ = nb::object();
    }
}

llama_context * Context::get() const {
    if (ctx_ == nullptr) {
        throw UseAfterClose("the context is closed");
    }
    return ctx_;
}

std::unique_lock<std::mutex> Context::lock() {
    if (callback_thread_.load() == std::this_thread::get_id()) {
        throw std::runtime_error("the context cannot be used from its own abort callback (its decode is running)");
    }
    // Never wait for the mutex while holding the GIL: the holder may need the
    // GIL (log forwarding) before it can let go.
    std::unique_lock<std::mutex> lk(mu_, std::try_to_lock);
    if (!lk.owns_lock()) {
        nb::gil_scoped_release release;
        lk.lock();
    }
    return lk;
}

std::unique_lock<std::mutex> Context::lock_open() {
    auto lk = lock();
    get();
    if (thread_pool_) {
        thread_pool_->check_fork(ctx_);
    }
    return lk;
}

void Context::close() {
    auto lk = lock();
    free_context();
    adapters_.clear();
    detach_samplers();
    has_abort_cb_.store(false);
    abort_cb_ = nb::object();
    abort_cb_data_ = nb::object();
}

void Context::check_seq_id(llama_seq_id seq_id, bool allow_any) const {
    if (allow_any && seq_id == -1) {
        return;
    }
    if (seq_id < 0 || static_cast<uint32_t>(seq_id) >= n_seq_max_) {
        throw nb::value_error(("sequence id " + std::to_string(seq_id) + " is out of range [0, " +
                               std::to_string(n_seq_max_) + ")").c_str());
    }
}

void Context::check_batch(const Batch & batch) const {
    const llama_batch & b = batch.raw();
    if (b.n_tokens == 0) {
        throw nb::value_error("the batch is empty");
    }
    if (static_cast<uint32_t>(b.n_tokens) > llama_n_batch(ctx_)) {
        throw nb::value_error(("the batch has " + std::to_string(b.n_tokens) + " tokens, more than this context's n_batch of " +
                               std::to_string(llama_n_batch(ctx_))).c_str());
    }
    if (batch.embd() > 0) {
        const int32_t want = llama_model_n_embd_inp(model_.get());
        if (batch.embd() != want) {
            throw nb::value_error(("embedding batch width " + std::to_string(batch.embd()) +
                                   " does not match the model's input width " + std::to_string(want)).c_str());
        }
    } else {
        for (int32_t i = 0; i < b.n_tokens; ++i) {
            if (b.token[i] < 0 || b.token[i] >= n_vocab_) {
                throw nb::value_error(("token id " + std::to_string(b.token[i]) + " at batch index " + std::to_string(i) +
                                       " is out of range [0, " + std::to_string(n_vocab_) + ")").c_str());
            }
        }
    }
    for (int32_t i = 0; i < b.n_tokens; ++i) {
        for (int32_t k = 0; k < b.n_seq_id[i]; ++k) {
            check_seq_id(b.seq_id[i][k]);
        }
    }
}

void Context::record_outputs(const Batch & batch) {
    const llama_batch & b = batch.raw();
    last_outputs_.assign(b.logits, b.logits + b.n_tokens);
    n_outputs_ = 0;
    for (int8_t flag : last_outputs_) {
        n_outputs_ += flag != 0;
    }
}

void Context::recorded_external_decode(int32_t n_outputs) {
    last_outputs_.assign(static_cast<size_t>(n_outputs), 1);
    n_outputs_ = n_outputs;
}

void Context::check_output_row(int32_t i) const {
    if (i < 0) {
        if (n_outputs_ + i < 0) {
            throw nb::index_error(("output index " + std::to_string(i) + " is out of range: the last batch had " +
                                   std::to_string(n_outputs_) + " outputs").c_str());
        }
        return;
    }
    if (static_cast<size_t>(i) >= last_outputs_.size() || last_outputs_[i] == 0) {
        throw nb::index_error(("batch index " + std::to_string(i) + " produced no output in the last decode").c_str());
    }
}

namespace {

void raise_for_status(int32_t status, const char * what, const std::string & log) {
    const std::string detail = log.empty() ? "" : ": " + log;
    if (status == 1) {
        throw KVCacheFull(std::string(what) + " found no free KV cache slot for the batch (free sequences or use a larger context)" + detail);
    }
    if (status == 2) {
        throw DecodeAborted(std::string(what) + " was aborted");
    }
    throw DecodeFailure(std::string(what) + " failed with status " + std::to_string(status) + detail);
}

}  // namespace

void Context::wait_for_outputs() {
    llama_context * ctx = get();
    const double extra = output_wait_for_test_;
    output_wait_for_test_ = 0.0;
    nb::gil_scoped_release release;
    llama_synchronize(ctx);
    if (extra > 0.0) {
        std::this_thread::sleep_for(std::chrono::duration<double>(extra));
    }
}

void Context::inject_output_wait(double seconds) {
    auto lk = lock_open();
    require(seconds >= 0.0 && std::isfinite(seconds), "seconds must be a finite number, at least 0");
    output_wait_for_test_ = seconds;
}

template <typename Run>
void Context::evaluate(const Batch & batch, const char * what, Run run) {
    auto lk = lock_open();
    llama_context * ctx = get();
    check_batch(batch);
    int32_t status = 0;
    LogCapture capture;
    if (take_injected_failure(batch)) {
        status = -3;
    } else {
        nb::gil_scoped_release release;
        auto rpc_turn = one_call_at_a_time(rpc_relays_);
        status = run(ctx, batch.raw());
    }
    fail_if_worker_lost(what);
    if (status != 0) {
        last_outputs_.clear();
        n_outputs_ = 0;
        if (status == 2) {
            abort_requested_.store(false);
        }
        raise_for_status(status, what, capture.message());
    }
    record_outputs(batch);
}

bool Context::take_injected_failure(const Batch & batch) {
    if (failures_left_ <= 0) {
        return false;
    }
    const llama_batch & b = batch.raw();
    bool hit = failing_seq_ < 0;
    for (int32_t i = 0; i < b.n_tokens && !hit; ++i) {
        for (int32_t k = 0; k < b.n_seq_id[i]; ++k) {
            hit = hit || b.seq_id[i][k] == failing_seq_;
        }
    }
    if (hit) {
        --failures_left_;
    }
    return hit;
}

void Context::inject_decode_failures(llama_seq_id seq_id, int32_t count) {
    auto lk = lock_open();
    require(count >= 0, "count must not be negative");
    if (seq_id >= 0) {
        check_seq_id(seq_id);
    }
    failing_seq_ = seq_id;
    failures_left_ = count;
}

int32_t Context::process(int32_t type, BatchExt & batch) {
    auto lk = lock_open();
    llama_context * ctx = get();
    batch.check_ready(*this, ctx, type);
    const char * what = type == LLAMA_PROCESS_TYPE_ENCODE ? "llama_process (encode)" : "llama_process (decode)";
    int32_t status = 0;
    LogCapture capture;
    {
        struct Busy {
            BatchExt & b;
            explicit Busy(BatchExt & batch) : b(batch) { b.set_busy(true); }
            ~Busy() { b.set_busy(false); }
        } busy(batch);
        nb::gil_scoped_release release;
        auto rpc_turn = one_call_at_a_time(rpc_relays_);
        status = llama_process(ctx, static_cast<llama_process_type>(type), batch.get());
    }
    fail_if_worker_lost(what);
    if (status != 0) {
        last_outputs_.clear();
        n_outputs_ = 0;
        if (status == 2) {
            abort_requested_.store(false);
        }
        if (status == 1 || status == 2) {
            return status;
        }
        if (status == -1) {
            throw nb::value_error((std::string(what) + ": llama.cpp rejected the batch: " +
                                   capture.message("invalid input batch")).c_str());
        }
        raise_for_status(status, what, capture.message());
    }
    const auto & entries = batch.entries();
    last_outputs_.resize(entries.size());
    n_outputs_ = 0;
    for (size_t i = 0; i < entries.size(); ++i) {
        // encoding outputs every entry
        last_outputs_[i] = (type == LLAMA_PROCESS_TYPE_ENCODE || entries[i].output) ? 1 : 0;
        n_outputs_ += last_outputs_[i];
    }
    return 0;
}

bool Context::set_sampler(llama_seq_id seq_id, const Sampler * smpl) {
    auto lk = lock_open();
    check_seq_id(seq_id);
    std::shared_ptr<SamplerState> st;
    if (smpl != nullptr) {
        smpl->get();
        st = smpl->state();
        auto current = samplers_.find(seq_id);
        if (current != samplers_.end() && current->second == st) {
            return true;  // already attached here: llama.cpp would initialise it a second time
        }
        if (!st->is_chain) {
            throw nb::value_error("llama_set_sampler needs a sampler chain (llama_sampler_chain_init), not a single sampler");
        }
        if (st->in_chain) {
            throw nb::value_error("this chain belongs to another chain: attach a chain of its own");
        }
        check_sampler_idle(st, "llama_set_sampler");
        if (st->attached) {
            throw nb::value_error("this chain is attached to a context already (one context and sequence at a time): "
                                  "attach a llama_sampler_clone of it");
        }
        std::vector<const SamplerState *> todo{st.get()};
        while (!todo.empty()) {
            const SamplerState * cur = todo.back();
            todo.pop_back();
            if (cur->is_custom && cur->ptr != nullptr &&
                (cur->ptr->iface->backend_init != nullptr || cur->ptr->iface->backend_accept != nullptr ||
                 cur->ptr->iface->backend_apply != nullptr || cur->ptr->iface->backend_set_input != nullptr ||
                 cur->ptr->iface->backend_reset != nullptr)) {
                throw nb::value_error("a custom sampler in this chain has backend_* callbacks: not supported");
            }
            if (cur->backend_initialized) {
                throw nb::value_error("this chain (or a sampler in it) was attached to a context before, and llama.cpp "
                                      "sets a sampler up for the backend only once: attach a llama_sampler_clone of it");
            }
            for (const auto & child : cur->children) {
                todo.push_back(child.get());
            }
        }
        const int32_t n_vocab = n_vocab_;
        if (st->n_vocab > 0 && st->n_vocab != n_vocab) {
            throw nb::value_error(("the sampler is for a vocabulary of " + std::to_string(st->n_vocab) +
                                   " tokens, the context's model has " + std::to_string(n_vocab)).c_str());
        }
    }
    bool ok = false;
    if (st) {
        st->attached = true;  // already now: no other thread may free or change it while llama.cpp sets it up
    }
    try {
        nb::gil_scoped_release release;  // backend_init probes the sampler's graph
        ok = llama_set_sampler(ctx_, seq_id, st ? st->ptr : nullptr);
    } catch (...) {
        if (st) {
            st->attached = false;
        }
        throw;
    }
    if (st) {
        st->attached = false;
    }
    // Whatever the result, llama.cpp no longer holds the sequence's previous sampler; it ran
    // backend_init (once per sampler, ever) exactly when it attached the new one.
    const bool attached = ok && st != nullptr;
    auto previous = samplers_.find(seq_id);
    if (previous != samplers_.end()) {
        previous->second->attached = false;
        samplers_.erase(previous);
    }
    if (attached) {
        std::vector<SamplerState *> todo{st.get()};
        while (!todo.empty()) {
            SamplerState * cur = todo.back();
            todo.pop_back();
            cur->backend_initialized = true;
            for (const auto & child : cur->children) {
                todo.push_back(child.get());
            }
        }
        st->attached = true;
        samplers_[seq_id] = st;
    }
    return ok;
}

void Context::decode(const Batch & batch) {
    evaluate(batch, "llama_decode", [](llama_context * ctx, const llama_batch & b) { return llama_decode(ctx, b); });
}

void Context::encode(const Batch & batch) {
    evaluate(batch, "llama_encode", [](llama_context * ctx, const llama_batch & b) { return llama_encode(ctx, b); });
}

void init_context(nb::module_ & m) {
    m.def("flash_attn_type_name", [](int32_t type) {
        if (type < LLAMA_FLASH_ATTN_TYPE_AUTO || type > LLAMA_FLASH_ATTN_TYPE_ENABLED) {
            throw nb::value_error(("flash_attn_type must be -1 (auto), 0 (disabled) or 1 (enabled), got " +
                                   std::to_string(type)).c_str());
        }
        return std::string(llama_flash_attn_type_name(static_cast<llama_flash_attn_type>(type)));
    }, nb::arg("flash_attn_type"), "llama_flash_attn_type_name: 'auto', 'disabled' or 'enabled'.");

    auto context_params = nb::class_<ContextParams>(m, "ContextParams",
        "Context options (llama_context_params). Enum fields take llama.cpp's integer values; -1 means 'the model's'.");
    context_params.def(nb::init<>());
#define ALLAMA_BIND_FIELD(type, name, doc) context_params.def_rw(#name, &ContextParams::name, doc);
    ALLAMA_CONTEXT_PARAMS(ALLAMA_BIND_FIELD)
#undef ALLAMA_BIND_FIELD

    nb::class_<Context>(m, "Context", "A llama.cpp context: KV memory, decoding and outputs.")
        .def(nb::init<const Model &, const ContextParams &>(), nb::arg("model"), nb::arg("params") = ContextParams())
        .def("close", &Context::close, "Free the context's memory now.")
        .def_prop_ro("closed", &Context::closed)
        .def_prop_ro("model", [](Context & c) { return Model(c.model(), "", false, c.rpc_relays()); },
                     "A handle to the context's model (its path is not kept).")
        .def("decode", &Context::decode, nb::arg("batch"),
             "Run the model on a batch (GIL released). Raises KVCacheFullError when no KV slot is free, "
             "DecodeAbortedError after abort(), DecodeError otherwise.")
        .def("encode", &Context::encode, nb::arg("batch"), "Run the encoder on a batch (encoder and embedding models).")
        .def("inject_output_wait", &Context::inject_output_wait, nb::arg("seconds"),
             "Test hook: the next read of a decode's outputs first waits `seconds` with the GIL released, "
             "as one still computing on a GPU would.")
        .def("inject_decode_failures", &Context::inject_decode_failures, nb::arg("seq_id") = -1, nb::arg("count") = 1,
             "Test hook: the next `count` decode()/encode() calls whose batch holds `seq_id` (-1: any) fail "
             "with DecodeError before llama.cpp runs; count=0 clears it.")
        .def("abort", &Context::request_abort, "Ask a running (or the next) decode to stop; safe from any thread.")
        .def_prop_ro("n_ctx", [](Context & c) { return llama_n_ctx(c.get()); })
        .def_prop_ro("n_ctx_seq", [](Context & c) { return llama_n_ctx_seq(c.get()); },
                     "KV cells one sequence may use (n_ctx, or n_ctx / n_seq_max with a stream per sequence).")
        .def_prop_ro("kv_unified", &Context::kv_unified, "Whether all sequences share one KV stream.")
        .def_prop_ro("n_ctx_seq", [](Context & c) { return llama_n_ctx_seq(c.get()); })
        .def_prop_ro("n_batch", [](Context & c) { return llama_n_batch(c.get()); })
        .def_prop_ro("n_ubatch", [](Context & c) { return llama_n_ubatch(c.get()); })
        .def_prop_ro("n_seq_max", [](Context & c) { return llama_n_seq_max(c.get()); })
        .def_prop_ro("n_vocab", &Context::n_vocab)
        .def_prop_ro("pooling_type", [](Context & c) { return static_cast<int>(llama_pooling_type(c.get())); })
        .def_prop_ro("n_threads", [](Context & c) { return llama_n_threads(c.get()); })
        .def_prop_ro("n_threads_batch", [](Context & c) { return llama_n_threads_batch(c.get()); })
        .def_prop_ro("n_outputs", &Context::n_outputs, "Outputs produced by the last decode.")
        .def("set_threads", &Context::set_threads, nb::arg("n_threads"), nb::arg("n_threads_batch"))
        .def("set_embeddings", &Context::set_embeddings, nb::arg("on"))
        .def("set_causal_attn", [](Context & c, bool on) { auto lk = c.lock_open(); llama_set_causal_attn(c.get(), on); }, nb::arg("on"))
        .def_prop_ro("causal_attn", [](Context & c) { auto lk = c.lock_open(); return llama_get_causal_attn(c.get()); })
        .def_prop_ro("n_rs_seq", [](Context & c) { auto lk = c.lock_open(); return llama_n_rs_seq(c.get()); },
                     "Recurrent-state cells per sequence (0 for a model without recurrent layers).")
        .def("set_warmup", [](Context & c, bool on) {
            auto lk = c.lock_open();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
            llama_set_warmup(c.get(), on);
#pragma GCC diagnostic pop
        }, nb::arg("on"), "llama_set_warmup (deprecated by llama.cpp): activate every tensor in the next decodes.")
        .def("set_abort_callback", &Context::set_abort_callback, nb::arg("callback").none(), nb::arg("data").none() = nb::none(),
             "Call callback(data) while llama.cpp computes (with the GIL); a true result aborts the decode. "
             "None removes it. The callback must not use this context.")
        .def("set_cvec", [](Context & c, std::optional<nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>> data,
                            int32_t n_embd, int32_t il_start, int32_t il_end) {
            auto lk = c.lock_open();
            if (!data) {
                return llama_set_adapter_cvec(c.get(), nullptr, 0, n_embd, il_start, il_end);
            }
            const int32_t want = llama_model_n_embd(c.model().get());
            if (n_embd != want) {
                throw nb::value_error(("the control vector's n_embd " + std::to_string(n_embd) +
                                       " does not match the model's " + std::to_string(want)).c_str());
            }
            return llama_set_adapter_cvec(c.get(), data->data(), data->size(), n_embd, il_start, il_end);
        }, nb::arg("data").none(), nb::arg("n_embd"), nb::arg("il_start"), nb::arg("il_end"),
           "llama_set_adapter_cvec: float32 rows of n_embd for layers 1.. (None clears); 0 on success.")
        .def("logits", [](Context & c, int32_t i) {
            auto lk = c.lock_open();
            c.check_output_row(i);
            c.wait_for_outputs();
            const float * row = llama_get_logits_ith(c.get(), i);
            if (row == nullptr) {
                throw nb::index_error("no logits for this row (was the context made for embeddings only?)");
            }
            // With a backend sampler (llama_set_sampler) llama.cpp returns the logits its samplers
            // left: one per candidate of llama_get_sampled_candidates_ith, maybe fewer than n_vocab.
            size_t n = static_cast<size_t>(c.n_vocab());
            if (llama_get_sampled_logits_ith(c.get(), i) == row) {
                n = std::min<size_t>(n, llama_get_sampled_logits_count_ith(c.get(), i));
            }
            return to_numpy(row, 1, n, false);
        }, nb::arg("i") = -1, "A copy of one output row's logits (float32, n_vocab; with a backend sampler attached, "
                              "the logits of its candidates).")
        .def("logits_rows", [](Context & c, const std::vector<int32_t> & rows) {
            auto lk = c.lock_open();
            c.wait_for_outputs();
            const size_t n_vocab = c.n_vocab();
            std::vector<float> out(rows.size() * n_vocab);
            for (size_t k = 0; k < rows.size(); ++k) {
                c.check_output_row(rows[k]);
                const float * row = llama_get_logits_ith(c.get(), rows[k]);
                if (row == nullptr) {
                    throw nb::index_error("no logits for this row");
                }
                if (llama_get_sampled_logits_ith(c.get(), rows[k]) == row &&
                    llama_get_sampled_logits_count_ith(c.get(), rows[k]) < n_vocab) {
                    throw nb::value_error(("output row " + std::to_string(rows[k]) + " holds only a backend sampler's "
                                           "candidates: read it with llama_get_logits_ith").c_str());
                }
                std::memcpy(out.data() + k * n_vocab, row, sizeof(float) * n_vocab);
            }
            return to_numpy(out.data(), rows.size(), n_vocab, true);
        }, nb::arg("rows"), "Copies of several output rows' logits (float32, len(rows) x n_vocab).")
        .def("process", &Context::process, nb::arg("type"), nb::arg("batch"),
             "llama_process: run an extended batch made for this context (GIL released); 0, 1 (no KV slot) "
             "or 2 (aborted). An invalid batch raises ValueError, other failures DecodeError.")
        .def("set_sampler", [](Context & c, llama_seq_id seq_id, const Sampler * smpl) { return c.set_sampler(seq_id, smpl); },
             nb::arg("seq_id"), nb::arg("smpl").none(),
             "llama_set_sampler: run a sampler chain in the graph for seq_id (None detaches); False when llama.cpp "
             "cannot offload it. The context keeps the chain while attached; the chain cannot be freed or changed meanwhile.")
        .def("sampled_token", [](Context & c, int32_t i) {
            auto lk = c.lock_open();
            c.check_output_row(i);
            return llama_get_sampled_token_ith(c.get(), i);
        }, nb::arg("i"), "llama_get_sampled_token_ith: the backend-sampled token, LLAMA_TOKEN_NULL (-1) when none was sampled.")
        .def("sampled_floats", [](Context & c, int32_t i, bool probs) -> std::optional<FloatArray> {
            auto lk = c.lock_open();
            c.check_output_row(i);
            llama_context * raw = c.get();
            const float * data = probs ? llama_get_sampled_probs_ith(raw, i) : llama_get_sampled_logits_ith(raw, i);
            if (data == nullptr) {
                return std::nullopt;
            }
            const uint32_t n = probs ? llama_get_sampled_probs_count_ith(raw, i) : llama_get_sampled_logits_count_ith(raw, i);
            return to_numpy(data, 1, std::min<size_t>(n, static_cast<size_t>(c.n_vocab())), false);
        }, nb::arg("i"), nb::arg("probs"),
           "A copy of the backend-sampled probabilities (probs=True) or logits of output i; None when none were produced.")
        .def("sampled_count", [](Context & c, int32_t i, int32_t which) {
            auto lk = c.lock_open();
            c.check_output_row(i);
            llama_context * raw = c.get();
            switch (which) {
                case 0: return llama_get_sampled_probs_count_ith(raw, i);
                case 1: return llama_get_sampled_logits_count_ith(raw, i);
                default: return llama_get_sampled_candidates_count_ith(raw, i);
            }
        }, nb::arg("i"), nb::arg("which"), "llama_get_sampled_{probs,logits,candidates}_count_ith (which = 0, 1, 2).")
        .def("sampled_candidates", [](Context & c, int32_t i) -> std::optional<nb::ndarray<nb::numpy, llama_token, nb::ndim<1>>> {
            auto lk = c.lock_open();
            c.check_output_row(i);
            llama_context * raw = c.get();
            const llama_token * ids = llama_get_sampled_candidates_ith(raw, i);
            if (ids == nullptr) {
                return std::nullopt;
            }
            // Without backend candidates llama.cpp points at its list of every token id (count 0).
            const uint32_t count = llama_get_sampled_candidates_count_ith(raw, i);
            const size_t n = std::min<size_t>(count > 0 ? count : static_cast<size_t>(c.n_vocab()), static_cast<size_t>(c.n_vocab()));
            auto * copy = new llama_token[n > 0 ? n : 1];
            std::copy(ids, ids + n, copy);
            nb::capsule owner(copy, [](void * p) noexcept { delete[] static_cast<llama_token *>(p); });
            return nb::ndarray<nb::numpy, llama_token, nb::ndim<1>>(copy, {n}, owner);
        }, nb::arg("i"), "A copy of the backend-sampled candidate token ids of output i (every token id when the "
                         "backend kept all candidates); None when llama.cpp has none.")
        .def("embeddings", [](Context & c, int32_t i) {
            auto lk = c.lock_open();
            c.check_output_row(i);
            c.wait_for_outputs();
            const float * row = llama_get_embeddings_ith(c.get(), i);
            if (row == nullptr) {
                throw nb::index_error("no embeddings for this row (is embeddings on, with pooling none?)");
            }
            return to_numpy(row, 1, llama_model_n_embd_out(c.model().get()), false);
        }, nb::arg("i") = -1, "A copy of one output token's embedding.")
        .def("embeddings_seq", [](Context & c, llama_seq_id seq_id) {
            auto lk = c.lock_open();
            c.check_seq_id(seq_id);
            const int pooling = llama_pooling_type(c.get());
            if (pooling == LLAMA_POOLING_TYPE_NONE) {
                throw nb::value_error("the context has pooling type none: read per-token embeddings with embeddings(i)");
            }
            c.wait_for_outputs();
            const float * row = llama_get_embeddings_seq(c.get(), seq_id);
            if (row == nullptr) {
                throw nb::value_error(("no pooled embedding for sequence " + std::to_string(seq_id) + " in the last batch").c_str());
            }
            const size_t n = pooling == LLAMA_POOLING_TYPE_RANK ? std::max<uint32_t>(1, llama_model_n_cls_out(c.model().get()))
                                                               : llama_model_n_embd_out(c.model().get());
            return to_numpy(row, 1, n, false);
        }, nb::arg("seq_id"), "A copy of a sequence's pooled embedding (rank pooling: its scores).")
        // --- memory ---
        .def("memory_clear", [](Context & c, bool data) { auto lk = c.lock_open(); llama_memory_clear(llama_get_memory(c.get()), data); },
             nb::arg("data") = true, "Forget every sequence.")
        .def("seq_rm", [](Context & c, llama_seq_id s, llama_pos p0, llama_pos p1) {
            auto lk = c.lock_open();
            c.check_seq_id(s, true);
            return llama_memory_seq_rm(llama_get_memory(c.get()), s, p0, p1);
        }, nb::arg("seq_id"), nb::arg("p0") = -1, nb::arg("p1") = -1,
           "Remove positions [p0, p1) of a sequence (-1: any sequence; negative bounds are open). False if a partial removal is not possible.")
        .def("seq_cp", [](Context & c, llama_seq_id src, llama_seq_id dst, llama_pos p0, llama_pos p1) {
            auto lk = c.lock_open();
            c.check_seq_id(src);
            c.check_seq_id(dst);
            // With a KV stream per sequence, llama.cpp copies whole streams only and aborts the
            // process (GGML_ASSERT) on a part of one.
            const bool whole = p0 <= 0 && (p1 < 0 || p1 >= static_cast<llama_pos>(llama_n_ctx_seq(c.get())));
            if (!c.kv_unified() && src != dst && !whole) {
                throw nb::value_error("with a KV stream per sequence (kv_unified=False), seq_cp copies whole "
                                      "sequences only: copy with p0=-1, p1=-1, then seq_rm the tail");
            }
            llama_memory_seq_cp(llama_get_memory(c.get()), src, dst, p0, p1);
        }, nb::arg("src"), nb::arg("dst"), nb::arg("p0") = -1, nb::arg("p1") = -1, "Share positions [p0, p1) of src with dst.")
        .def("seq_keep", [](Context & c, llama_seq_id s) {
            auto lk = c.lock_open();
            c.check_seq_id(s);
            llama_memory_seq_keep(llama_get_memory(c.get()), s);
        }, nb::arg("seq_id"), "Remove every other sequence.")
        .def("seq_add", [](Context & c, llama_seq_id s, llama_pos p0, llama_pos p1, llama_pos delta) {
            auto lk = c.lock_open();
            c.check_seq_id(s);
            if (!llama_memory_can_shift(llama_get_memory(c.get()))) {
                throw nb::value_error("this model's memory cannot shift positions");
            }
            llama_memory_seq_add(llama_get_memory(c.get()), s, p0, p1, delta);
        }, nb::arg("seq_id"), nb::arg("p0"), nb::arg("p1"), nb::arg("delta"), "Shift positions [p0, p1) by delta.")
        .def("seq_div", [](Context & c, llama_seq_id s, llama_pos p0, llama_pos p1, int d) {
            auto lk = c.lock_open();
            c.check_seq_id(s);
            if (d < 1) {
                throw nb::value_error("the divisor must be at least 1");
            }
            if (!llama_memory_can_shift(llama_get_memory(c.get()))) {
                throw nb::value_error("this model's memory cannot shift positions");
            }
            llama_memory_seq_div(llama_get_memory(c.get()), s, p0, p1, d);
        }, nb::arg("seq_id"), nb::arg("p0"), nb::arg("p1"), nb::arg("d"), "Divide positions [p0, p1) by d.")
        .def("seq_pos_min", [](Context & c, llama_seq_id s) {
            auto lk = c.lock_open();
            c.check_seq_id(s);
            return llama_memory_seq_pos_min(llama_get_memory(c.get()), s);
        }, nb::arg("seq_id"), "Smallest position held for the sequence, -1 if empty.")
        .def("seq_pos_max", [](Context & c, llama_seq_id s) {
            auto lk = c.lock_open();
            c.check_seq_id(s);
            return llama_memory_seq_pos_max(llama_get_memory(c.get()), s);
        }, nb::arg("seq_id"), "Largest position held for the sequence, -1 if empty.")
        .def_prop_ro("can_shift", [](Context & c) { auto lk = c.lock_open(); return llama_memory_can_shift(llama_get_memory(c.get())); })
        // --- state ---
        .def("state_get", [](Context & c) {
            auto lk = c.lock_open();
            std::vector<uint8_t> buf;
            {
                nb::gil_scoped_release release;
                buf.resize(llama_state_get_size(c.get()));
                buf.resize(llama_state_get_data(c.get(), buf.data(), buf.size()));
            }
            return to_bytes(buf);
        }, "The whole context state (outputs and KV memory) as bytes.")
        .def("state_set", [](Context & c, nb::bytes data) {
            auto lk = c.lock_open();
            size_t read = 0;
            LogCapture capture;
            {
                nb::gil_scoped_release release;
                read = llama_state_set_data(c.get(), reinterpret_cast<const uint8_t *>(data.c_str()), data.size());
            }
            if (read == 0) {
                throw nb::value_error(("state data does not fit this context: " + capture.message("rejected by llama.cpp")).c_str());
            }
            return read;
        }, nb::arg("data"), "Restore state from state_get(); returns the bytes read.")
        .def("seq_state_get", [](Context & c, llama_seq_id s) {
            auto lk = c.lock_open();
            c.check_seq_id(s);
            std::vector<uint8_t> buf;
            {
                nb::gil_scoped_release release;
                buf.resize(llama_state_seq_get_size(c.get(), s));
                buf.resize(llama_state_seq_get_data(c.get(), buf.data(), buf.size(), s));
            }
            return to_bytes(buf);
        }, nb::arg("seq_id"), "One sequence's KV memory as bytes.")
        .def("seq_state_set", [](Context & c, nb::bytes data, llama_seq_id s) {
            auto lk = c.lock_open();
            c.check_seq_id(s);
            size_t read = 0;
            LogCapture capture;
            {
                nb::gil_scoped_release release;
                read = llama_state_seq_set_data(c.get(), reinterpret_cast<const uint8_t *>(data.c_str()), data.size(), s);
            }
            if (read == 0) {
                throw nb::value_error(("sequence state does not fit this context: " + capture.message("rejected by llama.cpp")).c_str());
            }
            return read;
        }, nb::arg("data"), nb::arg("seq_id"), "Load seq_state_get() bytes into a sequence (which should be empty).")
        // --- LoRA ---
        .def("set_lora_adapters", [](Context & c, const std::vector<std::pair<const LoraAdapter *, float>> & adapters) {
            auto lk = c.lock_open();
            std::vector<llama_adapter_lora *> raw;
            std::vector<float> scales;
            std::vector<LoraPtr> keep;
            for (const auto & [adapter, scale] : adapters) {
                if (adapter == nullptr) {
                    throw nb::type_error("expected LoraAdapter objects");
                }
                raw.push_back(adapter->ptr().get());
                scales.push_back(scale);
                keep.push_back(adapter->ptr());
            }
            if (llama_set_adapters_lora(c.get(), raw.data(), raw.size(), scales.data()) != 0) {
                throw nb::value_error("llama.cpp rejected the LoRA adapters (were they loaded for this model?)");
            }
            c.adapters_ = std::move(keep);
        }, nb::arg("adapters"), "Use these (adapter, scale) pairs for every following decode; [] removes all.")
        // --- perf ---
        .def("perf", [](Context & c) {
            auto lk = c.lock_open();
            c.wait_for_outputs();  // (llama.cpp counts a decode's tokens when it synchronizes)
            const llama_perf_context_data d = llama_perf_context(c.get());
            nb::dict out;
            out["t_start_ms"] = d.t_start_ms;
            out["t_load_ms"] = d.t_load_ms;
            out["t_p_eval_ms"] = d.t_p_eval_ms;
            out["t_eval_ms"] = d.t_eval_ms;
            out["n_p_eval"] = d.n_p_eval;
            out["n_eval"] = d.n_eval;
            out["n_reused"] = d.n_reused;
            return out;
        }, "llama.cpp's counters: tokens of multi-token decodes (n_p_eval), single-token decodes (n_eval) "
           "and their times. llama.cpp reports a zero count as 1.")
        .def("perf_reset", [](Context & c) {
            auto lk = c.lock_open();
            c.wait_for_outputs();  // (llama.cpp counts a decode's tokens when it synchronizes)
            llama_perf_context_reset(c.get());
        }, "Zero llama.cpp's counters, the decodes made so far included.")
        .def("perf_print", [](Context & c) {
            auto lk = c.lock_open();
            c.wait_for_outputs();  // (llama.cpp counts a decode's tokens when it synchronizes)
            llama_perf_context_print(c.get());
        }, "Log llama.cpp's performance summary (through its log callback).")
        // --- state sizes and llama.cpp's session files (for allama.llama_cpp) ---
        .def("state_size", [](Context & c) {
            auto lk = c.lock_open();
            nb::gil_scoped_release release;
            return llama_state_get_size(c.get());
        }, "Bytes state_get() would return.")
        .def("seq_state_size", [](Context & c, llama_seq_id s) {
            auto lk = c.lock_open();
            c.check_seq_id(s);
            nb::gil_scoped_release release;
            return llama_state_seq_get_size(c.get(), s);
        }, nb::arg("seq_id"), "Bytes seq_state_get() would return.")
        .def("seq_state_size_ext", [](Context & c, llama_seq_id s, uint32_t flags) {
            auto lk = c.lock_open();
            c.check_seq_id(s);
            check_state_flags(flags);
            nb::gil_scoped_release release;
            return llama_state_seq_get_size_ext(c.get(), s, flags);
        }, nb::arg("seq_id"), nb::arg("flags"), "llama_state_seq_get_size_ext.")
        .def("seq_state_get_ext", [](Context & c, llama_seq_id s, uint32_t flags) {
            auto lk = c.lock_open();
            c.check_seq_id(s);
            check_state_flags(flags);
            std::vector<uint8_t> buf;
            {
                nb::gil_scoped_release release;
                buf.resize(llama_state_seq_get_size_ext(c.get(), s, flags));
                buf.resize(llama_state_seq_get_data_ext(c.get(), buf.data(), buf.size(), s, flags));
            }
            return to_bytes(buf);
        }, nb::arg("seq_id"), nb::arg("flags"), "llama_state_seq_get_data_ext: one sequence's state as bytes.")
        .def("seq_state_set_ext", [](Context & c, nb::bytes data, llama_seq_id s, uint32_t flags) {
            auto lk = c.lock_open();
            c.check_seq_id(s);
            check_state_flags(flags);
            size_t read = 0;
            LogCapture capture;
            {
                nb::gil_scoped_release release;
                read = llama_state_seq_set_data_ext(c.get(), reinterpret_cast<const uint8_t *>(data.c_str()), data.size(), s, flags);
            }
            if (read == 0) {
                throw nb::value_error(("sequence state does not fit this context: " + capture.message("rejected by llama.cpp")).c_str());
            }
            return read;
        }, nb::arg("data"), nb::arg("seq_id"), nb::arg("flags"), "llama_state_seq_set_data_ext: the bytes read.")
        .def("state_save_file", [](Context & c, const std::string & path, const std::vector<llama_token> & tokens) {
            auto lk = c.lock_open();
            nb::gil_scoped_release release;
            return llama_state_save_file(c.get(), path.c_str(), tokens.data(), tokens.size());
        }, nb::arg("path"), nb::arg("tokens"), "llama_state_save_file: the state and its tokens; False on failure.")
        .def("state_load_file", [](Context & c, const std::string & path, size_t n_token_capacity) -> std::optional<std::vector<llama_token>> {
            auto lk = c.lock_open();
            std::vector<llama_token> tokens(token_buffer_size(path, n_token_capacity));
            size_t n = 0;
            bool ok = false;
            {
                nb::gil_scoped_release release;
                ok = llama_state_load_file(c.get(), path.c_str(), tokens.data(), tokens.size(), &n);
            }
            if (!ok) {
                return std::nullopt;
            }
            tokens.resize(n);
            return tokens;
        }, nb::arg("path"), nb::arg("n_token_capacity"),
           "llama_state_load_file: the saved tokens (at most n_token_capacity), or None when the file does not fit.")
        .def("seq_state_save_file", [](Context & c, const std::string & path, llama_seq_id s, const std::vector<llama_token> & tokens) {
            auto lk = c.lock_open();
            c.check_seq_id(s);
            nb::gil_scoped_release release;
            return llama_state_seq_save_file(c.get(), path.c_str(), s, tokens.data(), tokens.size());
        }, nb::arg("path"), nb::arg("seq_id"), nb::arg("tokens"), "llama_state_seq_save_file: bytes written, 0 on failure.")
        .def("seq_state_load_file", [](Context & c, const std::string & path, llama_seq_id s, size_t n_token_capacity)
                 -> std::optional<std::pair<size_t, std::vector<llama_token>>> {
            auto lk = c.lock_open();
            c.check_seq_id(s);
            std::vector<llama_token> tokens(token_buffer_size(path, n_token_capacity));
            size_t n = 0;
            size_t read = 0;
            {
                nb::gil_scoped_release release;
                read = llama_state_seq_load_file(c.get(), path.c_str(), s, tokens.data(), tokens.size(), &n);
            }
            if (read == 0) {
                return std::nullopt;
            }
            tokens.resize(n);
            return std::make_pair(read, tokens);
        }, nb::arg("path"), nb::arg("seq_id"), nb::arg("n_token_capacity"),
           "llama_state_seq_load_file: (bytes read, tokens), or None when the file does not fit.");
}

}  // namespace allama
