#!/usr/bin/env bash
# Builds the peers the benchmarks compare against, from the same vendored
# llama.cpp tree and build options as allama, so all use identical kernels:
#   - build/peers/bin/llama-batched-bench   (llama.cpp's own batched ceiling)
#   - build/peers/bin/llama-server          (llama.cpp's HTTP server, without its web UI:
#                                            no npm, no download; for benchmarks/http_serving.py)
#   - build/peers/bin/llama-mtmd-cli        (llama.cpp's multimodal CLI: checks the test
#                                            projectors of allama.testing.model_builder)
#   - build/peers/bin/lib*.so               (shared llama/ggml/mtmd libraries)
#   - llama-cpp-python 0.3.36 installed with LLAMA_BUILD=OFF, loading those
#     libraries through LLAMA_CPP_LIB_PATH=build/peers/bin, with its server's dependencies
# Run inside the project's environment (scripts/bootstrap.sh). Takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
cmake -S vendor/llama.cpp -B build/peers -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_SUBPROCESS=OFF -DGGML_OPENMP=OFF ${CMAKE_ARGS:-} >/dev/null
cmake --build build/peers --target llama-batched-bench llama-server llama-mtmd-cli llama ggml
# (llama_cpp fails to import without LLAMA_CPP_LIB_PATH: LLAMA_BUILD=OFF ships no library)
if ! LLAMA_CPP_LIB_PATH="$PWD/build/peers/bin" python -c "import llama_cpp" 2>/dev/null; then
    CMAKE_ARGS="-DLLAMA_BUILD=OFF" python -m pip install --quiet --no-deps "llama-cpp-python==0.3.36"
    python -m pip install --quiet diskcache
fi
if ! python -c "import fastapi, pydantic_settings, sse_starlette, starlette_context, uvicorn" 2>/dev/null; then
    # llama_cpp.server's dependencies (its [server] extra), for benchmarks/http_serving.py
    python -m pip install --quiet fastapi pydantic-settings sse-starlette starlette-context uvicorn
fi
echo "peers ready: build/peers/bin (set LLAMA_CPP_LIB_PATH=$PWD/build/peers/bin for llama-cpp-python)"
