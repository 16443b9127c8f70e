#include "rpc_worker.h"

#include "errors.h"

#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "ggml-backend.h"
#include "ggml-rpc.h"

#include <optional>
#include <string>
#include <vector>

namespace nb = nanobind;

namespace allama {

namespace {

// The devices to serve: those named, else every GPU, else the CPU.
std::vector<ggml_backend_dev_t> worker_devices(const std::vector<std::string> & names) {
    std::vector<ggml_backend_dev_t> devices;
    for (const auto & name : names) {
        ggml_backend_dev_t dev = ggml_backend_dev_by_name(name.c_str());
        if (dev == nullptr) {
            std::string known;
            for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
                known += (known.empty() ? "" : ", ") + std::string(ggml_backend_dev_name(ggml_backend_dev_get(i)));
            }
            throw nb::value_error(("unknown device '" + name + "'; this build has: " + known).c_str());
        }
        devices.push_back(dev);
    }
    if (devices.empty()) {
        for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
            ggml_backend_dev_t dev = ggml_backend_dev_get(i);
            if (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_GPU) {
                devices.push_back(dev);
            }
        }
    }
    if (devices.empty()) {
        devices.push_back(ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU));
    }
    return devices;
}

void serve_rpc_worker(const std::string & host, int port, int n_threads, const std::optional<std::string> & cache_dir,
                      const std::vector<std::string> & device_names) {
    require(!host.empty() && host.find(':') == std::string::npos,
            "host must be an IPv4 address or a host name (ggml's RPC server listens on IPv4)");
    require(port >= 1 && port <= 65535, "port must be 1-65535");
    require(n_threads >= 1, "threads must be at least 1");
    std::vector<ggml_backend_dev_t> devices = worker_devices(device_names);
    const std::string endpoint = host + ":" + std::to_string(port);
    {
        nb::gil_scoped_release release;
        // Returns only when it cannot start (the reason is on stderr).
        ggml_backend_rpc_start_server(endpoint.c_str(), cache_dir ? cache_dir->c_str() : nullptr,
                                      static_cast<size_t>(n_threads), devices.size(), devices.data());
    }
    PyErr_SetString(PyExc_OSError, ("the RPC worker could not start on " + endpoint +
                                    " (address in use or not this machine's?)").c_str());
    throw nb::python_error();
}

}  // namespace

void init_rpc_worker(nb::module_ & m) {
    m.def("serve_rpc_worker", &serve_rpc_worker, nb::arg("host"), nb::arg("port"), nb::arg("n_threads"),
          nb::arg("cache_dir").none() = nb::none(), nb::arg("devices") = std::vector<std::string>{},
          "Serve this machine's devices (those named, else every GPU, else the CPU) to models on other "
          "hosts over ggml's RPC protocol. Blocks for good with the GIL released; raises OSError when "
          "it cannot listen. The protocol has no authentication: listen on a private network only.");
}

}  // namespace allama
