"""Built-in chat completion handlers: chatml-function-calling, functionary,
functionary-v1 and functionary-v2 (registered on import)."""

from allama.chat.handlers import chatml_function_calling, functionary, functionary_v2  # noqa: F401
