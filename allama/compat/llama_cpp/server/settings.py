"""llama-cpp-python's `llama_cpp.server.settings`: allama's server settings (pydantic-settings)."""

from allama.server.settings import ConfigFileSettings, ModelSettings, ServerSettings, Settings

__all__ = ["ConfigFileSettings", "ModelSettings", "ServerSettings", "Settings"]
