// Refuses to start on a CPU that lacks instructions this build's llama.cpp kernels use.
#pragma once

namespace allama {

// Throws ImportError naming the missing instruction sets: a native build (GGML_NATIVE, the
// default) carried to an older CPU would otherwise die of SIGILL in its first matmul.
void check_cpu_supports_build();

}  // namespace allama
