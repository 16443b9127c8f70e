"""`allama serve` and `python -m allama.server`: run the server with uvicorn.

    allama serve --model model.gguf [--alias NAME] [--n_parallel 8] [--host 0.0.0.0] [--port 8000]
    allama serve --config models.yaml          # several models, chosen by `model` in requests
    allama serve                               # the demo model (allama.default_model)

Every `ServerSettings` and `ModelSettings` field is a flag (`--n_ctx 4096` or `--n-ctx 4096`;
booleans as `--flash_attn` or `--flash_attn false` (true/false, t/f, yes/no, y/n, on/off, 1/0,
any case); lists space- or comma-separated (`--tensor_split 0.5 0.5`); dicts as JSON) and an
environment variable (`N_CTX=4096`). Flags win over the environment; with
`--config` (or `CONFIG_FILE`), server flags override the file's server settings.
"""

from __future__ import annotations

import argparse
import json
import os
import types
import typing
from collections.abc import Callable
from typing import Any

from allama.server.settings import ConfigFileSettings, ModelSettings, ServerSettings, Settings

_SHORTCUTS = {"model_alias": ["--alias"], "api_key": ["--api-key"], "clip_model_path": ["--mmproj"],
              "shutdown_grace_seconds": ["--drain-timeout", "--drain_timeout"],
              "max_loaded_models": ["--models-max"], "rpc_servers": ["--rpc"]}


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "t", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "f", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _base_type(annotation: Any) -> Any:
    """int for `int | None`, and so on (the first non-None member of a union); str for a
    union of several types (`bool | int`), which the settings parse."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return members[0] if len(members) == 1 else str
    return annotation


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="allama serve", description="OpenAI-compatible server over llama.cpp",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", "--config_file", dest="config_file", default=os.environ.get("CONFIG_FILE"),
                        help="a JSON or YAML file with server settings and a list of `models`")
    for model in (ServerSettings, ModelSettings):
        group = parser.add_argument_group(model.__name__)
        for name, field in model.model_fields.items():
            flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else []) + _SHORTCUTS.get(name, [])
            kind = _base_type(field.annotation)
            options: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": field.description}
            if kind is bool:
                options.update(nargs="?", const=True, type=_boolean)
            elif kind in (int, float, str):
                options["type"] = kind
            elif typing.get_origin(kind) is dict:
                options["type"] = json.loads
            elif typing.get_origin(kind) is list:
                options["nargs"] = "+"  # items space-separated, or comma-separated in one
            elif typing.get_origin(kind) is typing.Literal:
                options["choices"] = typing.get_args(kind)
            # `bool | int` stays a string for the settings to parse
            group.add_argument(*flags, **options)
    return parser


def settings_from_args(argv: list[str] | None = None) -> Settings | ConfigFileSettings:
    args = vars(build_parser().parse_args(argv))
    config_file = args.pop("config_file", None)
    if config_file:
        file_settings = ConfigFileSettings.from_file(config_file)
        server_flags = {k: v for k, v in args.items() if k in ServerSettings.model_fields}
        model_flags = set(args) - set(server_flags)
        if model_flags:
            raise SystemExit(f"allama serve: with --config, give model settings in the file, not {sorted(model_flags)}")
        return file_settings.model_copy(update=ServerSettings.model_validate(
            {**file_settings.model_dump(exclude={"models"}), **server_flags}).model_dump())
    if "model" not in args and "MODEL" not in os.environ:
        from allama.default_model import default_model

        demo = default_model()  # Gemma 3 270M from PyPI (the demo extra), else a tiny random llama
        args = {"model": str(demo.path), "model_alias": demo.alias, "chat_format": demo.chat_format} | args
    return Settings(**args)


def loading_bar(alias: str) -> Callable[[float], bool]:
    """llama.cpp's progress callback for loading model `alias`, drawn as a bar on stderr."""
    from allama.cli.progress import Progress

    bar = Progress(100, f"loading {alias}", "%", counts=False)

    def advance(fraction: float) -> bool:
        target = min(int(fraction * 100), 100)
        if target > bar.done:
            bar.update(target - bar.done)
        if target >= 100:
            bar.close()
        return True

    return advance


def main(argv: list[str] | None = None) -> int:
    """Serves until SIGINT or SIGTERM: the first stops accepting and drains (running requests
    get --drain-timeout seconds, then are cancelled) and exits 0; a second SIGINT exits at once (130)."""
    import uvicorn

    from allama.server.app import create_app
    from allama.server.graceful_server import GracefulServer

    settings = settings_from_args(argv)
    app = create_app(settings, load_progress=loading_bar)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, ssl_keyfile=settings.ssl_keyfile,
                            ssl_certfile=settings.ssl_certfile, log_level="info")
    server = GracefulServer(config, drain_timeout=settings.shutdown_grace_seconds)
    server.run()
    return 130 if server.force_exit else 0
