#include "model.h"

#include "errors.h"
#include "logging.h"
#include "rpc_relay.h"

#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include "ggml-backend.h"
#include "ggml-rpc.h"
#include "gguf.h"
#include "llama-model.h"  // llama_model::memory_breakdown (buffer types of the weights)
#include "llama-model-saver.h"  // llama_model_saver_supports_arch: saving other architectures aborts

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <optional>
#include <sys/stat.h>
#include <unordered_set>

namespace nb = nanobind;

namespace allama {

namespace {

// Reads a metadata string through one of llama.cpp's "returns the needed length" getters.
template <typename Getter>
std::string read_string(Getter getter) {
    std::vector<char> buf(256);
    int32_t n = getter(buf.data(), buf.size());
    if (n < 0) {
        return {};
    }
    if (static_cast<size_t>(n) >= buf.size()) {
        buf.resize(static_cast<size_t>(n) + 1);
        n = getter(buf.data(), buf.size());
        if (n < 0) {
            return {};
        }
    }
    return std::string(buf.data(), static_cast<size_t>(n));
}

std::vector<llama_model_kv_override> build_kv_overrides(const ModelParams & params) {
    std::vector<llama_model_kv_override> out;
    for (const auto & [key, value] : params.kv_overrides) {
        if (key.empty() || key.size() >= sizeof(llama_model_kv_override::key)) {
            throw nb::value_error(("kv_overrides key must be 1 to 127 bytes long: '" + key + "'").c_str());
        }
        llama_model_kv_override ov{};
        std::memcpy(ov.key, key.data(), key.size());
        if (std::holds_alternative<bool>(value)) {
            ov.tag = LLAMA_KV_OVERRIDE_TYPE_BOOL;
            ov.val_bool = std::get<bool>(value);
        } else if (std::holds_alternative<int64_t>(value)) {
            ov.tag = LLAMA_KV_OVERRIDE_TYPE_INT;
            ov.val_i64 = std::get<int64_t>(value);
        } else if (std::holds_alternative<double>(value)) {
            ov.tag = LLAMA_KV_OVERRIDE_TYPE_FLOAT;
            ov.val_f64 = std::get<double>(value);
        } else {
            const auto & s = std::get<std::string>(value);
            if (s.size() >= sizeof(ov.val_str)) {
                throw nb::value_error(("kv_overrides string value for '" + key + "' must be under 128 bytes").c_str());
            }
            ov.tag = LLAMA_KV_OVERRIDE_TYPE_STR;
            std::memcpy(ov.val_str, s.data(), s.size());
        }
        out.push_back(ov);
    }
    if (!out.empty()) {
        out.push_back(llama_model_kv_override{});  // the list ends with an empty key
    }
    return out;
}

// Links to the RPC workers in `servers` (through relays: see rpc_relay.h), and the devices
// the model is to use: the workers' first (llama.cpp's order: fewer transfers), then this
// machine's GPUs (integrated ones only when there is no discrete one). Null without servers.
std::shared_ptr<RpcRelays> link_rpc_workers(const std::vector<std::string> & servers, double timeout_s,
                                            std::vector<ggml_backend_dev_t> & devices) {
    if (servers.empty()) {
        return nullptr;
    }
    ggml_backend_reg_t rpc = ggml_backend_reg_by_name("RPC");
    if (rpc == nullptr) {
        throw nb::value_error("rpc_servers needs a build with the RPC backend (CMAKE_ARGS=-DGGML_RPC=on)");
    }
    using add_server_fn = ggml_backend_reg_t (*)(const char *);
    auto add_server = reinterpret_cast<add_server_fn>(ggml_backend_reg_get_proc_address(rpc, "ggml_backend_rpc_add_server"));
    if (add_server == nullptr) {
        throw nb::value_error("this build's RPC backend cannot add servers");
    }
    require(std::isfinite(timeout_s) && timeout_s > 0 && timeout_s <= 3600, "rpc_timeout must be in (0, 3600] seconds");
    require(servers.size() <= GGML_RPC_MAX_SERVERS,
            "at most " + std::to_string(GGML_RPC_MAX_SERVERS) + " RPC servers");
    auto relays = std::make_shared<RpcRelays>();
    {
        nb::gil_scoped_release release;  // connecting may take up to the timeout
        for (const auto & endpoint : servers) {
            relays->relays.push_back(std::make_unique<RpcRelay>(endpoint, timeout_s));
            ggml_backend_reg_t reg = add_server(relays->relays.back()->local_endpoint().c_str());
            if (auto loss = relays->loss()) {
                throw ModelLoadFailure(*loss);
            }
            if (reg == nullptr || ggml_backend_reg_dev_count(reg) == 0) {
                throw ModelLoadFailure("RPC worker " + endpoint + " offers no device");
            }
            for (size_t i = 0; i < ggml_backend_reg_dev_count(reg); ++i) {
                devices.push_back(ggml_backend_reg_dev_get(reg, i));
            }
        }
    }
    std::vector<ggml_backend_dev_t> gpus, igpus;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        if (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_GPU) {
            gpus.push_back(dev);
        } else if (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_IGPU) {
            igpus.push_back(dev);
        }
    }
    devices.insert(devices.end(), gpus.begin(), gpus.end());
    if (gpus.empty()) {
        devices.insert(devices.end(), igpus.begin(), igpus.end());
    }
    devices.push_back(nullptr);  // llama.cpp reads the list up to a null entry
    return relays;
}

// State shared with llama.cpp's progress callback during one load.
struct ProgressState {
    nb::object callback;
    bool cancelled = false;
    std::optional<nb::python_error> error;
};

bool on_progress(float progress, void * user_data) {
    auto * st = static_cast<ProgressState *>(user_data);
    nb::gil_scoped_acquire gil;
    try {
        nb::object result = st->callback(progress);
        // Like llama-cpp-python: returning False (not None) cancels the load.
        if (!result.is_none() && !nb::cast<bool>(result)) {
            st->cancelled = true;
        }
    } catch (nb::python_error & e) {
        st->error.emplace(std::move(e));
        st->cancelled = true;
    } catch (const std::exception &) {
        st->cancelled = true;
    }
    return !st->cancelled;
}

}  // namespace

void check_gguf_file(const std::string & path, const char * what) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            nb::object exc = nb::module_::import_("builtins").attr("FileNotFoundError");
            PyErr_SetObject(exc.ptr(), nb::make_tuple(ENOENT, std::string(what) + " file not found", path).ptr());
            throw nb::python_error();
        }
        throw ModelLoadFailure(std::string("cannot access ") + what + " file '" + path + "': " + std::strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
        throw ModelLoadFailure(std::string(what) + " path '" + path + "' is a directory, not a GGUF file");
    }
    if (!S_ISREG(st.st_mode)) {  // a FIFO or device would block the read below
        throw ModelLoadFailure(std::string(what) + " path '" + path + "' is not a regular file");
    }
    std::ifstream f(path, std::ios::binary);
    if (!f) {
        throw ModelLoadFailure(std::string("cannot open ") + what + " file '" + path + "'");
    }
    char magic[4] = {0, 0, 0, 0};
    f.read(magic, 4);
    if (f.gcount() != 4 || std::memcmp(magic, "GGUF", 4) != 0) {
        throw ModelLoadFailure("'" + path + "' is not a GGUF file (it does not start with the GGUF magic)");
    }
}

void check_gguf_contents(const std::string & path) {
    gguf_init_params params{};
    params.no_alloc = true;
    params.ctx = nullptr;
    gguf_context * ctx = gguf_init_from_file(path.c_str(), params);
    if (ctx == nullptr) {
        return;  // unreadable metadata: llama.cpp's loader reports it
    }
    std::unique_ptr<gguf_context, decltype(&gguf_free)> guard(ctx, gguf_free);
    // Integer and F64 tensors load, but ggml's CPU ops abort on them at the first decode.
    for (int64_t i = 0; i < gguf_get_n_tensors(ctx); ++i) {
        const ggml_type type = gguf_get_tensor_type(ctx, i);
        if (type == GGML_TYPE_F64 || type == GGML_TYPE_I8 || type == GGML_TYPE_I16 || type == GGML_TYPE_I32 ||
            type == GGML_TYPE_I64) {
            throw ModelLoadFailure("'" + path + "' has tensor '" + gguf_get_tensor_name(ctx, i) + "' of type " +
                                   ggml_type_name(type) + ", which llama.cpp cannot compute with");
        }
    }
    // Hyperparameters llama.cpp asserts on: the layer count (at load) and the norm epsilons
    // (GGML_ASSERT(eps >= 0) in the first decode).
    const int64_t arch_key = gguf_find_key(ctx, "general.architecture");
    if (arch_key >= 0 && gguf_get_kv_type(ctx, arch_key) == GGUF_TYPE_STRING) {
        const std::string arch = gguf_get_val_str(ctx, arch_key);
        const int64_t layers = gguf_find_key(ctx, (arch + ".block_count").c_str());
        if (layers >= 0 && gguf_get_kv_type(ctx, layers) == GGUF_TYPE_UINT32) {
            const uint32_t n = gguf_get_val_u32(ctx, layers);
            if (n < 1 || n > 512) {  // LLAMA_MAX_LAYERS
                throw ModelLoadFailure("'" + path + "' has " + std::to_string(n) +
                                       " layers (block_count); llama.cpp supports 1 to 512");
            }
        }
        for (const char * suffix : {".attention.layer_norm_epsilon", ".attention.layer_norm_rms_epsilon"}) {
            const int64_t eps = gguf_find_key(ctx, (arch + suffix).c_str());
            if (eps >= 0 && gguf_get_kv_type(ctx, eps) == GGUF_TYPE_FLOAT32) {
                const float value = gguf_get_val_f32(ctx, eps);
                if (!std::isfinite(value) || value < 0.0f) {
                    throw ModelLoadFailure("'" + path + "' has " + arch + suffix + " = " + std::to_string(value) +
                                           "; a norm epsilon must be finite and not negative");
                }
            }
        }
    }
    const int64_t key = gguf_find_key(ctx, "tokenizer.ggml.tokens");
    if (key < 0 || gguf_get_kv_type(ctx, key) != GGUF_TYPE_ARRAY || gguf_get_arr_type(ctx, key) != GGUF_TYPE_STRING) {
        return;
    }
    const size_t n = gguf_get_arr_n(ctx, key);
    std::unordered_set<std::string> seen;
    seen.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        std::string text = gguf_get_arr_str(ctx, key, i);
        if (text.empty()) {
            text = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp names empty tokens
        }
        if (!seen.insert(std::move(text)).second) {
            throw ModelLoadFailure("'" + path + "' has a corrupt vocabulary: token " + std::to_string(i) +
                                   " repeats an earlier token's text");
        }
    }
}

const ModelPtr & Model::ptr() const {
    if (!model_) {
        throw UseAfterClose("the model is closed");
    }
    return model_;
}

void Model::close() {
    if (owns_rpc_links_ && rpc_relays_ && model_) {
        rpc_relays_->release("the model was closed");
    }
    model_.reset();
}

Model Model::load(const std::vector<std::string> & paths, const ModelParams & params, nb::object progress_callback) {
    if (paths.empty()) {
        throw nb::value_error("no model path given");
    }
    for (const auto & p : paths) {
        check_gguf_file(p, "model");
        check_gguf_contents(p);
    }
    if (params.tensor_split.size() > llama_max_devices()) {
        throw nb::value_error(("tensor_split has more entries than this build's maximum of " +
                               std::to_string(llama_max_devices()) + " devices").c_str());
    }
    if (params.split_mode < LLAMA_SPLIT_MODE_NONE || params.split_mode > LLAMA_SPLIT_MODE_TENSOR) {
        throw nb::value_error("split_mode must be 0 (none), 1 (layer), 2 (row) or 3 (tensor)");
    }
    std::vector<ggml_backend_dev_t> devices;
    std::shared_ptr<RpcRelays> relays = link_rpc_workers(params.rpc_servers, params.rpc_timeout, devices);

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = params.n_gpu_layers < 0 ? INT32_MAX : params.n_gpu_layers;
    mp.split_mode = static_cast<llama_split_mode>(params.split_mode);
    mp.main_gpu = params.main_gpu;
    if (relays) {
        mp.devices = devices.data();
    }
    std::vector<float> tensor_split(llama_max_devices(), 0.0f);
    if (!params.tensor_split.empty()) {
        std::copy(params.tensor_split.begin(), params.tensor_split.end(), tensor_split.begin());
        mp.tensor_split = tensor_split.data();
    }
    mp.vocab_only = params.vocab_only;
    mp.check_tensors = params.check_tensors;
    if (params.use_mmap && params.use_mlock) {
        mp.load_mode = LLAMA_LOAD_MODE_MMAP_MLOCK;
    } else if (params.use_mlock) {
        mp.load_mode = LLAMA_LOAD_MODE_MLOCK;
    } else if (params.use_mmap) {
        mp.load_mode = LLAMA_LOAD_MODE_MMAP;
    } else {
        mp.load_mode = LLAMA_LOAD_MODE_NONE;
    }
    std::vector<llama_model_kv_override> overrides = build_kv_overrides(params);
    if (!overrides.empty()) {
        mp.kv_overrides = overrides.data();
    }
    ProgressState progress;
    if (!progress_callback.is_none()) {
        progress.callback = progress_callback;
        mp.progress_callback = on_progress;
        mp.progress_callback_user_data = &progress;
    }

    llama_model * raw = nullptr;
    std::string reason;
    {
        LogCapture capture;
        {
            nb::gil_scoped_release release;
            try {
                if (paths.size() == 1) {
                    raw = llama_model_load_from_file(paths[0].c_str(), mp);
                } else {
                    std::vector<const char *> c_paths;
                    for (const auto & p : paths) {
                        c_paths.push_back(p.c_str());
                    }
                    raw = llama_model_load_from_splits(c_paths.data(), c_paths.size(), mp);
                }
            } catch (const std::exception & e) {
                raw = nullptr;
                reason = e.what();
            }
        }
        if (raw == nullptr && reason.empty()) {
            reason = capture.message("llama.cpp gave no reason");
        }
    }
    if (progress.error) {
        if (raw != nullptr) {
            llama_model_free(raw);
        }
        throw std::move(*progress.error);
    }
    if (raw == nullptr) {
        if (progress.cancelled) {
            throw ModelLoadFailure("loading '" + paths[0] + "' was cancelled by the progress callback");
        }
        throw ModelLoadFailure("failed to load model from '" + paths[0] + "': " + reason);
    }
    // The relays outlive the weights (freeing them still talks to the workers).
    ModelPtr model(raw, [relays](llama_model * m) { llama_model_free(m); });
    if (relays) {
        if (auto loss = relays->loss()) {
            throw ModelLoadFailure("failed to load model from '" + paths[0] + "': " + *loss);
        }
    }
    return Model(std::move(model), paths[0], params.vocab_only, std::move(relays), true);
}

LoraAdapter Model::load_lora(const std::string & path) const {
    check_gguf_file(path, "LoRA adapter");
    ModelPtr model = ptr();
    llama_adapter_lora * raw = nullptr;
    std::string reason;
    {
        LogCapture capture;
        {
            nb::gil_scoped_release release;
            try {
                raw = llama_adapter_lora_init(model.get(), path.c_str());
            } catch (const std::exception & e) {
                reason = e.what();
            }
        }
        if (raw == nullptr && reason.empty()) {
            reason = capture.message("llama.cpp gave no reason");
        }
    }
    if (raw == nullptr) {
        throw ModelLoadFailure("failed to load LoRA adapter from '" + path + "': " + reason);
    }
    // The deleter holds the model so that the adapter is freed before its model.
    LoraPtr adapter(raw, [model](llama_adapter_lora * a) { llama_adapter_lora_free(a); });
    return LoraAdapter(std::move(adapter), path);
}

std::map<std::string, std::string> LoraAdapter::metadata() const {
    std::map<std::string, std::string> out;
    const llama_adapter_lora * a = adapter_.get();
    const int32_t n = llama_adapter_meta_count(a);
    for (int32_t i = 0; i < n; ++i) {
        std::string key = read_string([&](char * b, size_t s) { return llama_adapter_meta_key_by_index(a, i, b, s); });
        out[key] = read_string([&](char * b, size_t s) { return llama_adapter_meta_val_str_by_index(a, i, b, s); });
    }
    return out;
}

std::vector<llama_token> LoraAdapter::alora_invocation_tokens() const {
    const uint64_t n = llama_adapter_get_alora_n_invocation_tokens(adapter_.get());
    const llama_token * t = llama_adapter_get_alora_invocation_tokens(adapter_.get());
    return t == nullptr ? std::vector<llama_token>{} : std::vector<llama_token>(t, t + n);
}

namespace {

// A metadata key or value by index as bytes (GGUF strings need not be UTF-8); None when out of range.
template <typename Getter>
std::optional<nb::bytes> meta_string(int32_t i, int32_t count, Getter getter) {
    if (i < 0 || i >= count) {
        return std::nullopt;
    }
    const std::string s = read_string(getter);
    return nb::bytes(s.data(), s.size());
}

}  // namespace

void init_model(nb::module_ & m) {
    m.def("ftype_name", [](int32_t ftype) { return std::string(llama_ftype_name(static_cast<llama_ftype>(ftype))); },
          nb::arg("ftype"), "llama_ftype_name: 'Q8_0', 'Q4_K - Medium', ... ('unknown, may not work' for others).");
    m.def("load_mode_name", [](int32_t mode) {
        if (mode < LLAMA_LOAD_MODE_AUTO || mode > LLAMA_LOAD_MODE_DIRECT_IO) {
            throw nb::value_error(("load_mode must be in [-1, 4], got " + std::to_string(mode)).c_str());
        }
        return std::string(llama_load_mode_name(static_cast<llama_load_mode>(mode)));
    }, nb::arg("load_mode"), "llama_load_mode_name.");
    m.def("load_mode_from_str", [](const std::string & name) {
        for (int32_t mode = LLAMA_LOAD_MODE_AUTO; mode <= LLAMA_LOAD_MODE_DIRECT_IO; ++mode) {
            if (name == llama_load_mode_name(static_cast<llama_load_mode>(mode))) {
                return mode;
            }
        }
        throw nb::value_error(("unknown load mode: '" + name + "' (auto, none, mmap, mlock, mmap+mlock, dio)").c_str());
    }, nb::arg("name"), "llama_load_mode_from_str.");
    m.def("meta_key_str", [](int32_t key) -> std::optional<std::string> {
        const char * s = llama_model_meta_key_str(static_cast<llama_model_meta_key>(key));
        return s ? std::optional<std::string>(s) : std::nullopt;
    }, nb::arg("key"), "llama_model_meta_key_str: the GGUF key of a LLAMA_MODEL_META_KEY_*; None if unknown.");
    m.def("max_tensor_buft_overrides", []() { return llama_max_tensor_buft_overrides(); });
    m.def("split_path", [](const std::string & prefix, int32_t split_no, int32_t split_count) {
        std::vector<char> buf(prefix.size() + 64);
        const int32_t n = llama_split_path(buf.data(), buf.size(), prefix.c_str(), split_no, split_count);
        return std::string(buf.data(), static_cast<size_t>(std::max(n, 0)));
    }, nb::arg("path_prefix"), nb::arg("split_no"), nb::arg("split_count"), "llama_split_path: '<prefix>-%05d-of-%05d.gguf'.");
    m.def("split_prefix", [](const std::string & path, int32_t split_no, int32_t split_count) {
        std::vector<char> buf(path.size() + 1);
        const int32_t n = llama_split_prefix(buf.data(), buf.size(), path.c_str(), split_no, split_count);
        return std::string(buf.data(), static_cast<size_t>(std::max(n, 0)));
    }, nb::arg("split_path"), nb::arg("split_no"), nb::arg("split_count"),
       "llama_split_prefix: the path without its split suffix; '' when the suffix does not match.");

    nb::class_<ModelParams>(m, "ModelParams", "Model loading options (llama_model_params), with llama-cpp-python's defaults.")
        .def(nb::init<>())
        .def_rw("n_gpu_layers", &ModelParams::n_gpu_layers, "Layers to offload to the GPU; -1 offloads all.")
        .def_rw("split_mode", &ModelParams::split_mode, "0 none, 1 layer, 2 row, 3 tensor.")
        .def_rw("main_gpu", &ModelParams::main_gpu)
        .def_rw("tensor_split", &ModelParams::tensor_split, "Share of the model on each GPU.")
        .def_rw("vocab_only", &ModelParams::vocab_only, "Load only the vocabulary, no weights.")
        .def_rw("use_mmap", &ModelParams::use_mmap)
        .def_rw("use_mlock", &ModelParams::use_mlock)
        .def_rw("check_tensors", &ModelParams::check_tensors, "Validate tensor data while loading.")
        .def_rw("kv_overrides", &ModelParams::kv_overrides, "Metadata values to override: key -> bool, int, float or str.")
        .def_rw("rpc_servers", &ModelParams::rpc_servers,
                "host:port of RPC workers (`allama rpc-server`) to spread the offloaded layers over.")
        .def_rw("rpc_timeout", &ModelParams::rpc_timeout,
                "Seconds to wait for an RPC worker to accept the connection and answer the handshake.");

    nb::class_<LoraAdapter>(m, "LoraAdapter", "A LoRA adapter loaded for one model.")
        .def_prop_ro("path", &LoraAdapter::path)
        .def_prop_ro("metadata", &LoraAdapter::metadata)
        .def_prop_ro("alora_invocation_tokens", &LoraAdapter::alora_invocation_tokens)
        .def_prop_ro("meta_count", [](const LoraAdapter & a) { return llama_adapter_meta_count(a.ptr().get()); })
        .def("meta_key_by_index", [](const LoraAdapter & a, int32_t i) {
            const llama_adapter_lora * p = a.ptr().get();
            return meta_string(i, llama_adapter_meta_count(p), [&](char * b, size_t s) { return llama_adapter_meta_key_by_index(p, i, b, s); });
        }, nb::arg("i"))
        .def("meta_val_by_index", [](const LoraAdapter & a, int32_t i) {
            const llama_adapter_lora * p = a.ptr().get();
            return meta_string(i, llama_adapter_meta_count(p), [&](char * b, size_t s) { return llama_adapter_meta_val_str_by_index(p, i, b, s); });
        }, nb::arg("i"));

    nb::class_<Model>(m, "Model", "A GGUF model loaded by llama.cpp.")
        .def_static("load",
            [](nb::object path, const std::optional<ModelParams> & params, nb::object progress_callback) {
                std::vector<std::string> paths;
                if (nb::isinstance<nb::list>(path) || nb::isinstance<nb::tuple>(path)) {
                    for (nb::handle p : path) {
                        paths.push_back(nb::cast<std::string>(nb::str(nb::module_::import_("os").attr("fspath")(p))));
                    }
                } else {
                    paths.push_back(nb::cast<std::string>(nb::module_::import_("os").attr("fspath")(path)));
                }
                return Model::load(paths, params.value_or(ModelParams{}), progress_callback);
            },
            nb::arg("path"), nb::arg("params").none() = nb::none(), nb::arg("progress_callback").none() = nb::none(),
            nb::sig("def load(path: str | os.PathLike[str] | list[str | os.PathLike[str]], params: ModelParams | None = None, "
                    "progress_callback: collections.abc.Callable[[float], bool | None] | None = None) -> Model"),
            "Load a model file, or the shards of a split model (a list of paths, or the first shard "
            "'*-00001-of-0000N.gguf', whose siblings are found by name). The progress callback gets "
            "a float in [0, 1] and cancels the load by returning False.")
        .def_prop_ro("path", &Model::path)
        .def_prop_ro("handle", [](const Model & self) { return reinterpret_cast<uintptr_t>(self.get()); },
                     "The llama_model's address: equal for handles to the same loaded model.")
        .def_prop_ro("closed", &Model::closed)
        .def_prop_ro("vocab_only", &Model::vocab_only)
        .def_prop_ro("lost_worker", [](const Model & self) -> std::optional<std::string> {
            return self.rpc_relays() ? self.rpc_relays()->loss() : std::nullopt;
        }, "Why an RPC worker holding some of the layers was lost (the model cannot decode any more), or None.")
        .def("close", &Model::close, "Release this handle; memory is freed once no Context or Vocab uses the model.")
        .def_prop_ro("metadata", [](const Model & self) {
            std::map<std::string, std::string> out;
            const llama_model * mdl = self.get();
            const int32_t n = llama_model_meta_count(mdl);
            for (int32_t i = 0; i < n; ++i) {
                std::string key = read_string([&](char * b, size_t s) { return llama_model_meta_key_by_index(mdl, i, b, s); });
                out[key] = read_string([&](char * b, size_t s) { return llama_model_meta_val_str_by_index(mdl, i, b, s); });
            }
            return out;
        }, "GGUF metadata as strings (array values are not included by llama.cpp).")
        .def_prop_ro("description", [](const Model & self) {
            return read_string([&](char * b, size_t s) { return llama_model_desc(self.get(), b, s); });
        })
        .def_prop_ro("size", [](const Model & self) { return llama_model_size(self.get()); }, "Bytes of all tensors.")
        .def_prop_ro("buffer_types", [](const Model & self) {
            std::map<std::string, size_t> out;
            for (const auto & [buft, bytes] : self.get()->memory_breakdown()) {
                std::string name = ggml_backend_buft_name(buft);
                if (self.rpc_relays()) {  // "RPC0[127.0.0.1:<relay>]" names the worker instead
                    for (const auto & relay : self.rpc_relays()->relays) {
                        size_t at = name.find("[" + relay->local_endpoint() + "]");
                        if (at != std::string::npos) {
                            name.replace(at + 1, relay->local_endpoint().size(), relay->worker());
                        }
                    }
                }
                out[name] += bytes;
            }
            return out;
        }, "Bytes of the weights in each llama.cpp buffer type ('CPU', 'CPU_REPACK', 'CUDA0', 'RPC0[host:port]', ...).")
        .def_prop_ro("n_params", [](const Model & self) { return llama_model_n_params(self.get()); })
        .def_prop_ro("n_ctx_train", [](const Model & self) { return llama_model_n_ctx_train(self.get()); })
        .def_prop_ro("n_embd", [](const Model & self) { return llama_model_n_embd(self.get()); })
        .def_prop_ro("n_embd_inp", [](const Model & self) { return llama_model_n_embd_inp(self.get()); })
        .def_prop_ro("n_embd_out", [](const Model & self) { return llama_model_n_embd_out(self.get()); })
        .def_prop_ro("n_layer", [](const Model & self) { return llama_model_n_layer(self.get()); })
        .def_prop_ro("n_head", [](const Model & self) { return llama_model_n_head(self.get()); })
        .def_prop_ro("n_head_kv", [](const Model & self) { return llama_model_n_head_kv(self.get()); })
        .def_prop_ro("n_swa", [](const Model & self) { return llama_model_n_swa(self.get()); })
        .def_prop_ro("n_cls_out", [](const Model & self) { return llama_model_n_cls_out(self.get()); })
        .def("cls_label", [](const Model & self, uint32_t i) -> std::optional<std::string> {
            if (i >= llama_model_n_cls_out(self.get())) {
                throw nb::index_error("classifier output index out of range");
            }
            const char * label = llama_model_cls_label(self.get(), i);
            return label ? std::optional<std::string>(label) : std::nullopt;
        }, nb::arg("i"))
        .def_prop_ro("rope_type", [](const Model & self) { return static_cast<int>(llama_model_rope_type(self.get())); })
        .def_prop_ro("rope_freq_scale_train", [](const Model & self) { return llama_model_rope_freq_scale_train(self.get()); })
        .def_prop_ro("ftype", [](const Model & self) { return static_cast<int>(llama_model_ftype(self.get())); })
        .def_prop_ro("has_encoder", [](const Model & self) { return llama_model_has_encoder(self.get()); })
        .def_prop_ro("has_decoder", [](const Model & self) { return llama_model_has_decoder(self.get()); })
        .def_prop_ro("decoder_start_token", [](const Model & self) { return llama_model_decoder_start_token(self.get()); })
        .def_prop_ro("is_recurrent", [](const Model & self) { return llama_model_is_recurrent(self.get()); })
        .def_prop_ro("is_hybrid", [](const Model & self) { return llama_model_is_hybrid(self.get()); })
        .def_prop_ro("is_diffusion", [](const Model & self) { return llama_model_is_diffusion(self.get()); })
        .def("chat_template", [](const Model & self, std::optional<std::string> name) -> std::optional<std::string> {
            const char * t = llama_model_chat_template(self.get(), name ? name->c_str() : nullptr);
            return t ? std::optional<std::string>(t) : std::nullopt;
        }, nb::arg("name").none() = nb::none(), "The default chat template, or a named one (e.g. 'tool_use'); None if absent.")
        .def_prop_ro("chat_templates", [](const Model & self) {
            std::map<std::string, std::string> out;
            const llama_model * mdl = self.get();
            const std::string prefix = "tokenizer.chat_template";
            const int32_t n = llama_model_meta_count(mdl);
            for (int32_t i = 0; i < n; ++i) {
                std::string key = read_string([&](char * b, size_t s) { return llama_model_meta_key_by_index(mdl, i, b, s); });
                if (key.compare(0, prefix.size(), prefix) != 0) {
                    continue;
                }
                std::string name = key.size() == prefix.size() ? "default" : key.substr(prefix.size() + 1);
                out[name] = read_string([&](char * b, size_t s) { return llama_model_meta_val_str_by_index(mdl, i, b, s); });
            }
            return out;
        }, "All chat templates in the metadata: 'default' and the named ones.")
        .def("load_lora", &Model::load_lora, nb::arg("path"), "Load a LoRA adapter GGUF for this model.")
        .def_prop_ro("meta_count", [](const Model & self) { return llama_model_meta_count(self.get()); })
        .def("meta_key_by_index", [](const Model & self, int32_t i) {
            const llama_model * p = self.get();
            return meta_string(i, llama_model_meta_count(p), [&](char * b, size_t s) { return llama_model_meta_key_by_index(p, i, b, s); });
        }, nb::arg("i"), "The i-th metadata key as bytes; None when i is out of range.")
        .def("meta_val_by_index", [](const Model & self, int32_t i) {
            const llama_model * p = self.get();
            return meta_string(i, llama_model_meta_count(p), [&](char * b, size_t s) { return llama_model_meta_val_str_by_index(p, i, b, s); });
        }, nb::arg("i"), "The i-th metadata value as text bytes; None when i is out of range.")
        .def_prop_ro("n_layer_nextn", [](const Model & self) { return llama_model_n_layer_nextn(self.get()); })
        .def("save", [](const Model & self, const std::string & path) {
            if (self.vocab_only()) {
                throw nb::value_error("a model loaded with vocab_only has no tensors to save");
            }
            ModelPtr keep = self.ptr();
            if (!llama_model_saver_supports_arch(keep->arch)) {
                throw nb::value_error(("llama.cpp cannot save models of the architecture '" +
                                       std::string(llm_arch_name(keep->arch)) + "'").c_str());
            }
            if (FILE * probe = std::fopen(path.c_str(), "wb")) {
                std::fclose(probe);
            } else {
                PyErr_SetFromErrnoWithFilename(PyExc_OSError, path.c_str());
                throw nb::python_error();
            }
            std::string reason;
            {
                nb::gil_scoped_release release;
                try {
                    llama_model_save_to_file(keep.get(), path.c_str());
                } catch (const std::exception & e) {
                    reason = e.what();
                }
            }
            if (!reason.empty()) {
                throw std::runtime_error("llama_model_save_to_file failed: " + reason);
            }
        }, nb::arg("path"), "llama_model_save_to_file: write the model (metadata and tensors) as GGUF.");
}

}  // namespace allama
