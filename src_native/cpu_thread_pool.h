#pragma once

#include "llama.h"

#include <memory>

namespace allama {

// Persistent CPU worker threads for one llama_context.
//
// Without a pool of its own, ggml's CPU backend starts and joins its worker threads on every
// graph it computes. Each new thread lands wherever the kernel puts it at that moment; when it
// lands on the core of the thread that called decode (the other core being busy with Python,
// say), the two spin at ggml's barriers on one core and a step takes a scheduler time slice
// instead of a fraction of a millisecond. Workers that live as long as the context are placed
// once and stay; between graphs they sleep (no polling), so they leave the cores to Python.
class CpuThreadPool {
public:
    // Makes the pools for single-token graphs (`n_threads` threads, the calling thread counting
    // as one) and for batches (`n_threads_batch`; the same pool when the counts are equal: ggml
    // wants a pool's size to match the graph's thread count) and attaches them to `ctx`;
    // nullptr for one thread each, or when the CPU backend offers no pools (llama.cpp then
    // starts threads per graph, as before).
    static std::unique_ptr<CpuThreadPool> attach(llama_context * ctx, int n_threads, int n_threads_batch);
    // Frees the workers: call after the context is freed.
    ~CpuThreadPool();
    CpuThreadPool(const CpuThreadPool &) = delete;
    CpuThreadPool & operator=(const CpuThreadPool &) = delete;

    // Before each decode: in a child made by fork() the workers do not exist, so the pool is
    // detached from `ctx` (llama.cpp starts threads per graph again) and never freed there.
    void check_fork(llama_context * ctx);

private:
    using FreeFn = void (*)(ggml_threadpool *);
    CpuThreadPool(ggml_threadpool * pool, ggml_threadpool * pool_batch, FreeFn free_fn);

    ggml_threadpool * pool_;
    ggml_threadpool * pool_batch_;  // nullptr: pool_ serves batches too
    FreeFn free_fn_;
    unsigned fork_generation_;  // the process's fork count when the workers were made
};

}  // namespace allama
