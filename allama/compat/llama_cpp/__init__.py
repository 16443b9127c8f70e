"""llama-cpp-python's `llama_cpp` package over allama: `import allama.compat.llama_cpp as llama_cpp`.

The top level holds what llama-cpp-python's does: llama.cpp's C API under its C names
(allama.llama_cpp), the blocking `Llama` and its companions (see .llama), and the OpenAI-shaped
types. `allama.compat.install()` makes it importable as `llama_cpp` for other libraries.
"""

from allama.compat.llama_cpp.llama_cpp import *  # noqa: F401,F403
from allama.compat.llama_cpp.llama_types import *  # noqa: F401,F403
from allama.compat.llama_cpp.llama import *  # noqa: F401,F403

# the llama-cpp-python release whose API this package follows (allama's own is allama.__version__)
__version__ = "0.3.36"
