"""llama-cpp-python's `llama_cpp.llama_cache`: allama's prompt caches (allama.cache)."""

from allama.cache import BaseLlamaCache, LlamaCache, LlamaDiskCache, LlamaRAMCache

__all__ = ["BaseLlamaCache", "LlamaCache", "LlamaDiskCache", "LlamaRAMCache"]
