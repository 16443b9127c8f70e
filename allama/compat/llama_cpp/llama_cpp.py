"""llama-cpp-python's `llama_cpp.llama_cpp` (llama.cpp's C API under its C names): allama.llama_cpp.

Handles are Python objects rather than ctypes pointers, token lists are lists, logits are NumPy
arrays; see allama.llama_cpp for the rules (out-buffers, validation instead of aborts).
"""

from allama.llama_cpp import *  # noqa: F401,F403
