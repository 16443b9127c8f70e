"""llama-cpp-python's private `llama_cpp._internals` (its ctypes wrapper classes LlamaModel,
LlamaContext, LlamaBatch, LlamaSampler).

allama does not reproduce them: its native objects live in allama._native and its C-level API
in .llama_cpp (handles from `llama_model_load_from_file`, `llama_init_from_model`,
`llama_batch_init`, `llama_sampler_chain_init`). The module exists so that code importing it
at the top imports; every name raises AttributeError saying so.
"""

from typing import NoReturn


def __getattr__(name: str) -> NoReturn:
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(
        f"allama.compat.llama_cpp._internals has no {name!r}: llama-cpp-python's private ctypes wrappers are not "
        "part of allama; use the llama.cpp C API of llama_cpp.llama_cpp (allama.llama_cpp) instead")
