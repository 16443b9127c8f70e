// C++ exception types for failures that Python sees as allama.errors classes.
// They are thrown anywhere in the native module (GIL held or not) and turned
// into Python exceptions by the translator registered in init_errors().
#pragma once

#include <nanobind/nanobind.h>

#include <stdexcept>
#include <string>

namespace allama {

// Raises ValueError(message) unless `ok`: argument checks before llama.cpp sees the values.
inline void require(bool ok, const std::string & message) {
    if (!ok) {
        throw nanobind::value_error(message.c_str());
    }
}

// A file that exists but is not a loadable GGUF model (allama.errors.ModelLoadError).
struct ModelLoadFailure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A grammar (GBNF) that does not parse, or that allows no token (allama.errors.GrammarError).
struct GrammarFailure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// llama_decode found no free KV cells for the batch (allama.errors.KVCacheFullError).
struct KVCacheFull : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// llama_decode/llama_encode was stopped by Context.abort() (allama.errors.DecodeAbortedError).
struct DecodeAborted : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Any other failure reported by llama_decode/llama_encode (allama.errors.DecodeError).
struct DecodeFailure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// An RPC worker holding some of the model's layers was lost (allama.errors.WorkerLostError).
struct WorkerLost : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// An operation on a Model or Context after close() (allama.errors.ClosedError).
struct UseAfterClose : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The Python exception object for a failure caught in native code: the allama.errors class
// of the types above (what the registered translator raises), RuntimeError for any other
// C++ exception. For a call that reports failures per item instead of raising (sample_batch).
nanobind::object python_exception(const std::exception_ptr & failure);

void init_errors(nanobind::module_ & m);

}  // namespace allama
