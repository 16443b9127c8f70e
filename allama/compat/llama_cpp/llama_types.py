"""llama-cpp-python's `llama_cpp.llama_types`: the OpenAI-shaped TypedDicts of allama.types."""

from allama.types import *  # noqa: F401,F403
