"""llama-cpp-python's `llama_cpp.llama_chat_format` over allama.chat.

The named prompt formats and chat completion handlers are allama's own, registered in
allama.chat's registry; they appear here under llama-cpp-python's function names too
(`format_chatml` is the formatter registered as "chatml", and so on). allama's chat
completion handlers are coroutine functions: pass them as `chat_handler=` (or their name as
`chat_format=`), as llama-cpp-python code does, rather than calling them directly.
"""

from allama.chat import *  # noqa: F401,F403
from allama.chat import __all__ as _chat_names
from allama.chat import get_chat_completion_handler, get_chat_format

# llama-cpp-python's names for the registered formats
format_llama2 = get_chat_format("llama-2")
format_llama3 = get_chat_format("llama-3")
format_alpaca = get_chat_format("alpaca")
format_qwen = get_chat_format("qwen")
format = get_chat_format("vicuna")  # noqa: A001  (llama-cpp-python's name for the vicuna format)
format_oasst_llama = get_chat_format("oasst_llama")
format_baichuan2 = get_chat_format("baichuan-2")
format_baichuan = get_chat_format("baichuan")
format_openbuddy = get_chat_format("openbuddy")
format_redpajama_incite = get_chat_format("redpajama-incite")
format_snoozy = get_chat_format("snoozy")
format_phind = get_chat_format("phind")
format_intel = get_chat_format("intel")
format_open_orca = get_chat_format("open-orca")
format_mistrallite = get_chat_format("mistrallite")
format_zephyr = get_chat_format("zephyr")
format_pygmalion = get_chat_format("pygmalion")
format_chatml = get_chat_format("chatml")
format_mistral_instruct = get_chat_format("mistral-instruct")
format_chatglm3 = get_chat_format("chatglm3")
format_openchat = get_chat_format("openchat")
format_saiga = get_chat_format("saiga")
format_gemma = get_chat_format("gemma")

# llama-cpp-python's names for the registered chat completion handlers
functionary_chat_handler = get_chat_completion_handler("functionary")
functionary_v1_v2_chat_handler = get_chat_completion_handler("functionary-v2")
chatml_function_calling = get_chat_completion_handler("chatml-function-calling")

__all__ = [*_chat_names, "format_alpaca", "format_baichuan", "format_baichuan2", "format_chatglm3",
           "format_chatml", "format_gemma", "format_intel", "format_llama2", "format_llama3",
           "format_mistral_instruct", "format_mistrallite", "format_oasst_llama", "format_open_orca",
           "format_openbuddy", "format_openchat", "format_phind", "format_pygmalion", "format_qwen",
           "format_redpajama_incite", "format_saiga", "format_snoozy", "format_zephyr",
           "functionary_chat_handler", "functionary_v1_v2_chat_handler", "chatml_function_calling"]
