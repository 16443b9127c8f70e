"""The OpenAI-compatible HTTP server (`pip install allama[server]`): `create_app(settings)`
returns an ASGI app; `allama serve` and `python -m allama.server` run it with uvicorn."""

from allama.server.app import create_app
from allama.server.settings import ConfigFileSettings, ModelSettings, ServerSettings, Settings

__all__ = ["ConfigFileSettings", "ModelSettings", "ServerSettings", "Settings", "create_app"]
