// Model: a loaded GGUF model (weights + vocabulary), and LoRA adapters for it.
#pragma once

#include <nanobind/nanobind.h>

#include "llama.h"
#include "rpc_relay.h"

#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace allama {

using ModelPtr = std::shared_ptr<llama_model>;
using LoraPtr = std::shared_ptr<llama_adapter_lora>;

// The llama_model_params llama-cpp-python exposes, with its defaults.
struct ModelParams {
    int32_t n_gpu_layers = 0;
    int32_t split_mode = LLAMA_SPLIT_MODE_LAYER;
    int32_t main_gpu = 0;
    std::vector<float> tensor_split;
    bool vocab_only = false;
    bool use_mmap = true;
    bool use_mlock = false;
    bool check_tensors = false;
    std::map<std::string, std::variant<bool, int64_t, double, std::string>> kv_overrides;
    std::vector<std::string> rpc_servers;
    double rpc_timeout = 10.0;
};

// A LoRA adapter; keeps its model alive.
class LoraAdapter {
public:
    LoraAdapter(LoraPtr adapter, std::string path) : adapter_(std::move(adapter)), path_(std::move(path)) {}
    const LoraPtr & ptr() const { return adapter_; }
    const std::string & path() const { return path_; }
    std::map<std::string, std::string> metadata() const;
    std::vector<llama_token> alora_invocation_tokens() const;

private:
    LoraPtr adapter_;
    std::string path_;
};

class Model {
public:
    // Loads one file, or the shards of a split model when `paths` has several.
    static Model load(const std::vector<std::string> & paths, const ModelParams & params,
                      nanobind::object progress_callback);

    // `owns_rpc_links`: this is the handle the model was loaded as, whose close() also ends
    // the sessions with its RPC workers (see close()).
    Model(ModelPtr model, std::string path, bool vocab_only, std::shared_ptr<RpcRelays> rpc_relays = nullptr,
          bool owns_rpc_links = false)
        : model_(std::move(model)), path_(std::move(path)), vocab_only_(vocab_only),
          rpc_relays_(std::move(rpc_relays)), owns_rpc_links_(owns_rpc_links) {}

    // The shared handle; throws UseAfterClose after close().
    const ModelPtr & ptr() const;
    llama_model * get() const { return ptr().get(); }
    const std::string & path() const { return path_; }
    bool closed() const { return !model_; }
    bool vocab_only() const { return vocab_only_; }
    // Drops this object's reference; the weights are freed once no Context or Vocab holds them.
    // Releases this handle. On the loaded handle of a model split over RPC workers it also
    // ends their sessions at once (a worker serves one client at a time, so a model loaded
    // next can use them) even while a Vocab still keeps the model; a Context left open then
    // fails its next decode with WorkerLost.
    void close();

    LoraAdapter load_lora(const std::string & path) const;
    // The links to the RPC workers that hold some of the layers; null for a local model.
    const std::shared_ptr<RpcRelays> & rpc_relays() const { return rpc_relays_; }

private:
    ModelPtr model_;
    std::string path_;
    bool vocab_only_;
    std::shared_ptr<RpcRelays> rpc_relays_;
    bool owns_rpc_links_;
};

// Checks that `path` names a readable GGUF file; raises FileNotFoundError or
// ModelLoadFailure naming the file otherwise.
void check_gguf_file(const std::string & path, const char * what);

// Refuses (ModelLoadFailure) what llama.cpp would abort on instead of failing: two tokens
// with one text (its vocabulary loader asserts), integer or F64 tensors (ggml's ops abort at
// the first decode), a layer count outside 1..512, a negative or non-finite norm epsilon.
// Reads the metadata only.
void check_gguf_contents(const std::string & path);

void init_model(nanobind::module_ & m);

}  // namespace allama
