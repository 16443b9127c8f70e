"""llama-cpp-python's `llama_cpp.mtmd_cpp` (ctypes bindings of llama.cpp's mtmd library).

allama has no low-level mtmd API: its multimodal support is the chat handlers
(`allama.chat.MTMDChatHandler` and the presets, in .llama_chat_format) and the
CLIP/LLaVA functions of .llava_cpp. Nothing here pretends otherwise: every name raises
AttributeError saying so.
"""

from typing import NoReturn


def __getattr__(name: str) -> NoReturn:
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(
        f"allama.compat.llama_cpp.mtmd_cpp has no {name!r}: allama does not bind llama.cpp's mtmd C API; "
        "use allama.chat.MTMDChatHandler (llama_chat_format.MTMDChatHandler) or llava_cpp's functions")
