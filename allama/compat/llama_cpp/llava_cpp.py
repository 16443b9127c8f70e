"""llama-cpp-python's `llama_cpp.llava_cpp` (the CLIP/LLaVA image functions): allama.llava_cpp,
over llama.cpp's mtmd."""

from allama.llava_cpp import *  # noqa: F401,F403
from allama.llava_cpp import __all__  # noqa: F401
