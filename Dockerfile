# allama's OpenAI-compatible server, CPU build (docs/deploying.md; the CUDA one: Dockerfile.cuda).
#
#   docker build -t allama .
#   docker run --rm -p 8000:8000 -v /srv/models:/models:ro allama --model /models/model.gguf --n_threads 4
#
# Settings are flags after the image name or environment variables (-e N_CTX=8192). Change the
# port with -e PORT=..., not --port, so that the health check follows it.
#
# The build is portable (x86-64 with AVX2; see docs/cpu.md): the image runs on other machines
# than the one that built it. --build-arg CMAKE_ARGS="-DGGML_NATIVE=on" tunes it to the
# building CPU instead.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake ninja-build \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The pinned llama.cpp tree (a PyPI source distribution, hash-checked): .dockerignore keeps a
# local copy out, so every image builds the same sources.
RUN python vendor/fetch_llama_cpp.py
ARG CMAKE_ARGS="-DGGML_NATIVE=off"
RUN CMAKE_ARGS="${CMAKE_ARGS}" python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir "$(ls /wheels/allama-*.whl)[server]" \
    && rm -rf /wheels
RUN useradd --system --uid 10001 --create-home --home-dir /home/allama allama
USER allama
WORKDIR /home/allama
ENV HOST=0.0.0.0 \
    PORT=8000 \
    MODEL=/models/model.gguf \
    PYTHONUNBUFFERED=1
EXPOSE 8000
# 200 once the model is loaded; 503 while it loads or when its queue is full.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ['PORT'], timeout=2)"
ENTRYPOINT ["allama", "serve"]
