// Quantization: llama.cpp's model quantizer (llama_model_quantize) over GGUF files.
#pragma once

#include <nanobind/nanobind.h>

namespace allama {

void init_quantize(nanobind::module_ & m);

}  // namespace allama
