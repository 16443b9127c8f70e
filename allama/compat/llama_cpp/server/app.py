"""llama-cpp-python's `llama_cpp.server.app`: `create_app(settings)` builds allama's ASGI app."""

from allama.server.app import create_app

__all__ = ["create_app"]
