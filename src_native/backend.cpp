#include "backend.h"

#include "llama.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <map>
#include <string>
#include <vector>

namespace nb = nanobind;

namespace allama {

void init_backend(nb::module_ & m) {
    llama_backend_init();
    // llama_backend_free() is not registered at exit: objects still alive at
    // interpreter shutdown may free their memory after it, which must stay valid.

    m.def("system_info", []() { return std::string(llama_print_system_info()); },
          "The CPU features and backends llama.cpp was built with.");
    m.def("llama_cpp_version", []() { return std::string(llama_version()); });
    m.def("supports_mmap", &llama_supports_mmap);
    m.def("supports_mlock", &llama_supports_mlock);
    m.def("supports_gpu_offload", &llama_supports_gpu_offload);
    m.def("supports_rpc", &llama_supports_rpc);
    m.def("max_devices", &llama_max_devices);
    m.def("max_parallel_sequences", &llama_max_parallel_sequences);
    m.def("devices", []() {
        std::vector<std::string> out;
        for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
            ggml_backend_dev_t dev = ggml_backend_dev_get(i);
            out.push_back(std::string(ggml_backend_dev_name(dev)) + ": " + ggml_backend_dev_description(dev));
        }
        return out;
    }, "The compute devices llama.cpp can use, as 'name: description'.");
    m.def("cpu_features", []() {
        // The CPU backend's own list: the instruction sets it was built with that this CPU has.
        std::map<std::string, std::string> out;
        ggml_backend_reg_t reg = ggml_backend_reg_by_name("CPU");
        auto get = reg ? reinterpret_cast<ggml_backend_get_features_t>(
                             ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features"))
                       : nullptr;
        if (get != nullptr) {
            for (ggml_backend_feature * f = get(reg); f->name != nullptr; ++f) {
                out[f->name] = f->value;
            }
        }
        return out;
    }, "The CPU backend's features as llama.cpp reports them (name -> value, e.g. AVX2 -> 1).");
    m.def("cpu_extra_buffer_types", []() {
        // Buffer types the CPU backend may repack weights into (CPU_REPACK, AMX, ...).
        std::vector<std::string> out;
        ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
        ggml_backend_reg_t reg = dev ? ggml_backend_dev_backend_reg(dev) : nullptr;
        auto get = reg ? reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(
                             ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts"))
                       : nullptr;
        if (get != nullptr) {
            for (ggml_backend_buffer_type_t * b = get(dev); b != nullptr && *b != nullptr; ++b) {
                out.push_back(ggml_backend_buft_name(*b));
            }
        }
        return out;
    }, "The extra buffer types of the CPU device, where quantized weights may be repacked.");
    m.def("time_us", &llama_time_us);
    m.attr("GGML_DEFAULT_N_THREADS") = GGML_DEFAULT_N_THREADS;
    m.def("numa_init", [](int strategy) {
        if (strategy < GGML_NUMA_STRATEGY_DISABLED || strategy >= GGML_NUMA_STRATEGY_COUNT) {
            throw nb::value_error(("NUMA strategy must be in [0, " + std::to_string(GGML_NUMA_STRATEGY_COUNT) + ")").c_str());
        }
        llama_numa_init(static_cast<ggml_numa_strategy>(strategy));
    }, nb::arg("strategy"), "llama_numa_init: 0 disabled, 1 distribute, 2 isolate, 3 numactl, 4 mirror.");
}

}  // namespace allama
