"""A live server with two models (a tiny chat llama and a tiny BERT embedder), configured
from a YAML file as users do, and one with an API key and tight limits."""

from __future__ import annotations

import pytest
import yaml

from allama.server import ConfigFileSettings, create_app
from allama.server.settings import ModelSettings, ServerSettings

from .live_server import serving
from .model_aliases import CHAT, EMBED


@pytest.fixture(scope="package")
def config_file(tmp_path_factory, llama_f32_path, bert_path):
    path = tmp_path_factory.mktemp("server") / "models.yaml"
    path.write_text(yaml.safe_dump({
        "max_tokens_limit": 4000,
        "max_n": 4,
        "max_loaded_models": 0,  # both resident: the tests use them side by side
        "models": [
            {"model": str(llama_f32_path), "model_alias": CHAT, "n_ctx": 512, "n_parallel": 8, "seed": 7},
            {"model": str(bert_path), "model_alias": EMBED, "n_ctx": 256, "n_parallel": 1},
        ],
    }))
    return path


@pytest.fixture(scope="package")
def app(config_file):
    return create_app(ConfigFileSettings.from_file(config_file))


@pytest.fixture(scope="package")
def base_url(app):
    with serving(app) as url:
        yield url


@pytest.fixture(scope="package")
def chat_model(app, base_url):
    """The served chat Llama (to read its engine stats)."""
    return app.state.registry.models[CHAT]


@pytest.fixture
def anyio_backend():
    return "asyncio"  # the server runs on uvicorn's asyncio loop; clients here use asyncio too


@pytest.fixture(scope="package")
def guarded(llama_f32_path):
    """One model, an API key, a 2 kB body limit, one slot and no queue."""
    app = create_app(server_settings=ServerSettings(api_key="s3cret", max_request_bytes=2048, max_prompt_tokens=40),
                     model_settings=[ModelSettings(model=str(llama_f32_path), n_ctx=4096, n_parallel=1, max_queue=0)])
    with serving(app) as url:
        yield url, app
