#include "quantize.h"

#include "errors.h"
#include "logging.h"
#include "model.h"

#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include "llama.h"

#include <string>
#include <tuple>

namespace nb = nanobind;

namespace allama {

namespace {

// The quantize options llama-cpp-python and llama-quantize expose; the rest keep llama.cpp's defaults.
struct QuantizeParams {
    int32_t nthread = 0;
    int32_t ftype = LLAMA_FTYPE_MOSTLY_Q8_0;
    int32_t output_tensor_type = -1;    // ggml_type; -1: llama.cpp's choice
    int32_t token_embedding_type = -1;  // ggml_type; -1: llama.cpp's choice
    bool allow_requantize = false;
    bool quantize_output_tensor = true;
    bool only_copy = false;
    bool pure = false;
    bool keep_split = false;
};

// Runs llama_model_quantize with the GIL released. Returns (status, llama.cpp's log of the
// failure): llama.cpp reports bad files, unknown types and unwritable outputs as status 1.
std::tuple<uint32_t, std::string> quantize(const std::string & src, const std::string & dst, const QuantizeParams & p) {
    check_gguf_file(src, "model");
    check_gguf_contents(src);
    require(p.output_tensor_type >= -1 && p.output_tensor_type < GGML_TYPE_COUNT, "output_tensor_type is not a ggml type");
    require(p.token_embedding_type >= -1 && p.token_embedding_type < GGML_TYPE_COUNT,
            "token_embedding_type is not a ggml type");
    llama_model_quantize_params params = llama_model_quantize_default_params();
    params.nthread = p.nthread;
    params.ftype = static_cast<llama_ftype>(p.ftype);
    if (p.output_tensor_type >= 0) {
        params.output_tensor_type = static_cast<ggml_type>(p.output_tensor_type);
    }
    if (p.token_embedding_type >= 0) {
        params.token_embedding_type = static_cast<ggml_type>(p.token_embedding_type);
    }
    params.allow_requantize = p.allow_requantize;
    params.quantize_output_tensor = p.quantize_output_tensor;
    params.only_copy = p.only_copy;
    params.pure = p.pure;
    params.keep_split = p.keep_split;
    uint32_t status = 0;
    LogCapture capture;
    {
        nb::gil_scoped_release release;
        status = llama_model_quantize(src.c_str(), dst.c_str(), &params);
    }
    return {status, status == 0 ? std::string() : capture.message("llama_model_quantize failed")};
}

}  // namespace

void init_quantize(nb::module_ & m) {
    nb::class_<QuantizeParams>(m, "QuantizeParams", "llama_model_quantize_params: what to quantize, and how.")
        .def(nb::init<>())
        .def_rw("nthread", &QuantizeParams::nthread, "Threads; <= 0 uses every core.")
        .def_rw("ftype", &QuantizeParams::ftype, "The target llama_ftype (LLAMA_FTYPE_MOSTLY_Q4_K_M is 15).")
        .def_rw("output_tensor_type", &QuantizeParams::output_tensor_type, "ggml_type of output.weight; -1: default.")
        .def_rw("token_embedding_type", &QuantizeParams::token_embedding_type,
                "ggml_type of the token embeddings; -1: default.")
        .def_rw("allow_requantize", &QuantizeParams::allow_requantize, "Allow quantizing already quantized tensors.")
        .def_rw("quantize_output_tensor", &QuantizeParams::quantize_output_tensor)
        .def_rw("only_copy", &QuantizeParams::only_copy, "Copy tensors as they are (ftype is ignored).")
        .def_rw("pure", &QuantizeParams::pure, "Every tensor in the target type, no mixtures (no _M/_S rules).")
        .def_rw("keep_split", &QuantizeParams::keep_split, "Write as many shards as the input has.");
    m.def("quantize", &quantize, nb::arg("src"), nb::arg("dst"), nb::arg("params"),
          "Quantize the GGUF model `src` into `dst`: (0, '') or (llama.cpp's status, its error log).");
}

}  // namespace allama
