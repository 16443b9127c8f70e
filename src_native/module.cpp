// allama._native: the nanobind module. Each concept registers itself from its own file.
#include <nanobind/nanobind.h>

#include "backend.h"
#include "batch.h"
#include "chat_template.h"
#include "context.h"
#include "cpu_check.h"
#include "errors.h"
#include "logging.h"
#include "low_level_sampler.h"
#include "media.h"
#include "model.h"
#include "quantize.h"
#include "rpc_worker.h"
#include "sampler.h"
#include "vocab.h"

NB_MODULE(_native, m) {
    m.doc() = "llama.cpp bound with nanobind: models, vocabularies, contexts, batches and samplers.";
    // Models may legitimately be alive at interpreter exit (an unclosed Llama's
    // decode thread holds them); that is not a reference-counting bug.
    nanobind::set_leak_warnings(false);
    allama::check_cpu_supports_build();  // before llama.cpp runs a single kernel
    allama::init_errors(m);
    allama::init_logging(m);
    allama::init_backend(m);
    allama::init_model(m);
    allama::init_vocab(m);
    allama::init_batch(m);
    allama::init_context(m);
    allama::init_sampler(m);
    allama::init_low_level_sampler(m);
    allama::init_chat_template(m);
    allama::init_media(m);
    allama::init_quantize(m);
    allama::init_rpc_worker(m);
}
