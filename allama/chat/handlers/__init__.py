"""Built-in chat completion handlers: chatml-function-calling, functionary,
functionary-v1 and functionary-v2."""

from typing import Any

from allama.chat.handlers import chatml_function_calling, functionary, functionary_v2

# The handlers by name, as the registry (allama.chat.registry) starts with them.
BUILTIN_CHAT_HANDLERS: dict[str, Any] = {
    "chatml-function-calling": chatml_function_calling.chatml_function_calling,
    "functionary": functionary.functionary,
    "functionary-v1": functionary_v2.functionary_v1,
    "functionary-v2": functionary_v2.functionary_v2,
}
