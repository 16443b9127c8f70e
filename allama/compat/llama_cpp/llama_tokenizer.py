"""llama-cpp-python's `llama_cpp.llama_tokenizer`: allama's tokenizers (allama.tokenizer)."""

from allama.tokenizer import BaseLlamaTokenizer, LlamaHFTokenizer, LlamaTokenizer

__all__ = ["BaseLlamaTokenizer", "LlamaHFTokenizer", "LlamaTokenizer"]
