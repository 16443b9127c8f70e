#include "cpu_check.h"

#include <nanobind/nanobind.h>

#include "ggml-cpu.h"

#include <cstdlib>
#include <string>

namespace allama {

void check_cpu_supports_build() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    // ggml_cpu_has_X() says whether the CPU backend was compiled with X (a constant, safe to
    // call on any CPU); __builtin_cpu_supports asks this CPU. This file is compiled without
    // -march flags, so the check itself runs anywhere.
    __builtin_cpu_init();
    struct Need {
        const char * name;
        int built;
        int present;
    };
    const Need needs[] = {
        {"SSSE3", ggml_cpu_has_ssse3(), __builtin_cpu_supports("ssse3")},
        {"AVX", ggml_cpu_has_avx(), __builtin_cpu_supports("avx")},
        {"AVX2", ggml_cpu_has_avx2(), __builtin_cpu_supports("avx2")},
        {"FMA", ggml_cpu_has_fma(), __builtin_cpu_supports("fma")},
        {"F16C", ggml_cpu_has_f16c(), __builtin_cpu_supports("f16c")},
        {"BMI2", ggml_cpu_has_bmi2(), __builtin_cpu_supports("bmi2")},
        {"AVX_VNNI", ggml_cpu_has_avx_vnni(), __builtin_cpu_supports("avxvnni")},
        {"AVX512F", ggml_cpu_has_avx512(), __builtin_cpu_supports("avx512f")},
        {"AVX512_VBMI", ggml_cpu_has_avx512_vbmi(), __builtin_cpu_supports("avx512vbmi")},
        {"AVX512_VNNI", ggml_cpu_has_avx512_vnni(), __builtin_cpu_supports("avx512vnni")},
        {"AVX512_BF16", ggml_cpu_has_avx512_bf16(), __builtin_cpu_supports("avx512bf16")},
    };
    // Test hook: ALLAMA_TEST_HIDE_CPU_FEATURES="AVX2,FMA" makes those count as absent.
    const char * hidden_env = std::getenv("ALLAMA_TEST_HIDE_CPU_FEATURES");
    const std::string hidden = hidden_env ? "," + std::string(hidden_env) + "," : "";
    std::string missing;
    for (const Need & need : needs) {
        const bool hide = hidden.find("," + std::string(need.name) + ",") != std::string::npos;
        if (need.built && (!need.present || hide)) {
            missing += (missing.empty() ? "" : ", ") + std::string(need.name);
        }
    }
    if (!missing.empty()) {
        throw nanobind::import_error(
            ("allama's native module was built for a CPU with " + missing +
             ", which this CPU lacks. Build allama on this machine (pip install --no-binary allama allama, "
             "or pip install . from a clone), or build a portable wheel with CMAKE_ARGS=\"-DGGML_NATIVE=off\" "
             "(AVX2 baseline); see docs/cpu.md.")
                .c_str());
    }
#endif
}

}  // namespace allama
