#include "cpu_thread_pool.h"
#include "interrupts_blocked.h"

#include "ggml-backend.h"
#include "ggml.h"

#include <atomic>
#include <pthread.h>

namespace allama {

namespace {

using NewFn = ggml_threadpool * (*)(ggml_threadpool_params *);

// How many fork()s this process descends through; read on every compute, so an atomic load
// rather than a getpid() system call.
std::atomic<unsigned> fork_generation{0};

unsigned current_fork_generation() {
    static const bool registered = [] {
        pthread_atfork(nullptr, nullptr, [] { fork_generation.fetch_add(1, std::memory_order_relaxed); });
        return true;
    }();
    (void) registered;
    return fork_generation.load(std::memory_order_relaxed);
}

// The CPU backend's pool functions, looked up through its registry (so that this works
// whether ggml's backends are linked in or loaded as modules).
template <typename Fn>
Fn cpu_backend_function(const char * name) {
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (cpu == nullptr) {
        return nullptr;
    }
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
    return reg == nullptr ? nullptr : reinterpret_cast<Fn>(ggml_backend_reg_get_proc_address(reg, name));
}

}  // namespace

std::unique_ptr<CpuThreadPool> CpuThreadPool::attach(llama_context * ctx, int n_threads, int n_threads_batch) {
    if (n_threads <= 1 && n_threads_batch <= 1) {
        return nullptr;
    }
    auto new_fn = cpu_backend_function<NewFn>("ggml_threadpool_new");
    auto free_fn = cpu_backend_function<FreeFn>("ggml_threadpool_free");
    if (new_fn == nullptr || free_fn == nullptr) {
        return nullptr;
    }
    auto make = [&](int n, bool paused) {
        ggml_threadpool_params params = ggml_threadpool_params_default(n);
        params.poll = 0;  // sleep between graphs: a spinning worker would take a core from Python
        params.paused = paused;
        return new_fn(&params);
    };
    // the workers are made with Ctrl-C and SIGTERM blocked, as the engine's decode thread runs
    const InterruptsBlocked blocked;
    ggml_threadpool * pool_batch = nullptr;
    if (n_threads_batch != n_threads) {
        pool_batch = make(n_threads_batch, false);
        if (pool_batch == nullptr) {
            return nullptr;
        }
    }
    // (llama.cpp resumes a paused pool when it switches to it)
    ggml_threadpool * pool = make(n_threads, pool_batch != nullptr);
    if (pool == nullptr) {
        if (pool_batch != nullptr) {
            free_fn(pool_batch);
        }
        return nullptr;
    }
    llama_attach_threadpool(ctx, pool, pool_batch);
    return std::unique_ptr<CpuThreadPool>(new CpuThreadPool(pool, pool_batch, free_fn));
}

CpuThreadPool::CpuThreadPool(ggml_threadpool * pool, ggml_threadpool * pool_batch, FreeFn free_fn)
    : pool_(pool), pool_batch_(pool_batch), free_fn_(free_fn), fork_generation_(current_fork_generation()) {}

CpuThreadPool::~CpuThreadPool() {
    if (pool_ != nullptr && current_fork_generation() == fork_generation_) {  // joins the workers; in a forked child they do not exist
        free_fn_(pool_);
        if (pool_batch_ != nullptr) {
            free_fn_(pool_batch_);
        }
    }
}

void CpuThreadPool::check_fork(llama_context * ctx) {
    if (pool_ != nullptr && current_fork_generation() != fork_generation_) {
        llama_detach_threadpool(ctx);
        pool_ = nullptr;
        pool_batch_ = nullptr;
    }
}

}  // namespace allama
