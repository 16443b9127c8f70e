"""llama-cpp-python's `llama_cpp.llama_speculative`: allama's draft models (allama.speculative);
LlamaModelDraft (a small model drafting for a large one) is allama's addition."""

from allama.speculative import *  # noqa: F401,F403
from allama.speculative import __all__  # noqa: F401
