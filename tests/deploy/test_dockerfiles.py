"""The Dockerfiles (CPU and CUDA) hold together, read statically with dockerfile-parse (docker
itself is not needed): a build stage that fetches the pinned llama.cpp tree and builds a wheel,
a runtime stage that installs it and runs as a non-root user, settings in ENV that the server
reads, a health check that is a real route on the exposed port (and that passes against a live
server), and an entrypoint that is the real `allama serve` taking the real flags."""

from __future__ import annotations

import argparse
import io
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from fastapi.routing import APIRoute

from allama.cli import build_parser as allama_parser
from allama.server import ModelSettings, create_app
from allama.server.cli import settings_from_args
from allama.server.routes import router
from allama.server.settings import Settings

from ..paths import REPO_ROOT
from ..server.live_server import serving

DOCKERFILES = ["Dockerfile", "Dockerfile.cuda"]


@dataclass
class Stage:
    """One FROM ... AS name section: its instructions as (instruction, value) pairs."""

    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [v for i, v in self.instructions if i == instruction]


def stages(path: Path) -> list[Stage]:
    found: list[Stage] = []
    for item in DockerfileParser(fileobj=io.BytesIO(path.read_bytes())).structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            found.append(Stage(value.split()[-1] if " AS " in value.upper() else ""))
        elif found and instruction != "COMMENT":
            found[-1].instructions.append((instruction, value))
    return found


def healthcheck_command(stage: Stage) -> str:
    (value,) = stage.values("HEALTHCHECK")
    return value.split("CMD", 1)[1].strip()


@dataclass
class Dockerfile:
    path: Path
    stages: list[Stage]


@pytest.fixture(params=DOCKERFILES)
def dockerfile(request) -> Dockerfile:
    path = REPO_ROOT / request.param
    return Dockerfile(path, stages(path))


def test_the_build_stage_fetches_the_pinned_tree_then_builds_a_wheel(dockerfile):
    build = dockerfile.stages[0]
    assert build.name == "build"
    runs = build.values("RUN")
    packages = " ".join(r for r in runs if "apt-get install" in r)
    assert all(p in packages.split() for p in ("build-essential", "cmake", "ninja-build")), packages
    fetch = next(i for i, r in enumerate(runs) if "vendor/fetch_llama_cpp.py" in r)
    wheel = next(i for i, r in enumerate(runs) if re.search(r"pip wheel .*--no-deps .*--wheel-dir /wheels \.$", r))
    assert fetch < wheel
    assert (REPO_ROOT / "vendor" / "fetch_llama_cpp.py").exists()


def test_the_runtime_stage_installs_the_wheel_and_runs_as_a_user_it_creates(dockerfile):
    runtime = dockerfile.stages[-1]
    assert len(dockerfile.stages) >= 2 and runtime.name == "runtime"
    assert "--from=build /wheels /wheels" in runtime.values("COPY")
    assert any("pip install" in r and "/wheels/allama-" in r and "[server]" in r for r in runtime.values("RUN"))
    (user,) = runtime.values("USER")
    assert user not in ("root", "0") and not user.startswith(("root:", "0:"))
    assert any(re.search(rf"\buseradd\b.* {re.escape(user)}$", r) for r in runtime.values("RUN"))


def runtime_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in stage.values("ENV"):
        for pair in shlex.split(value):
            key, _, val = pair.partition("=")
            env[key] = val
    return env


def test_the_environment_sets_server_settings_and_the_exposed_port(dockerfile):
    env = runtime_env(dockerfile.stages[-1])
    settings = {name.upper() for name in Settings.model_fields}
    assert {"HOST", "PORT", "MODEL"} <= set(env) and env["HOST"] == "0.0.0.0"
    assert {k for k in env if k not in ("PATH", "PYTHONUNBUFFERED")} <= settings
    assert dockerfile.stages[-1].values("EXPOSE") == [env["PORT"]]


def test_the_entrypoint_is_allama_serve_and_its_flags_parse(dockerfile):
    runtime = dockerfile.stages[-1]
    (entrypoint,) = runtime.values("ENTRYPOINT")
    program, command = json.loads(entrypoint)
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[program] == "allama.cli:main"
    subcommands = next(a for a in allama_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert command == "serve" and command in subcommands
    # the usage line in the file's header (continued lines joined): flags after the image name
    # go to `allama serve`
    header = re.sub(r"\\\n#\s*", " ", dockerfile.path.read_text())
    usage = re.search(r"docker run .*? allama(?::cuda)? +(--model .*)", header)
    assert usage is not None
    settings = settings_from_args(shlex.split(usage.group(1)))
    assert settings.model == "/models/model.gguf"


def test_the_health_check_is_a_route_on_the_exposed_port(dockerfile):
    runtime = dockerfile.stages[-1]
    command = healthcheck_command(runtime)
    url = re.search(r"http://127\.0\.0\.1:%s(/[\w/]*)", command)
    assert url is not None, command
    gets = {r.path for r in router.routes if isinstance(r, APIRoute) and "GET" in r.methods}
    assert url.group(1) in gets
    assert "os.environ['PORT']" in command  # follows -e PORT=..., which also sets where it listens


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_health_check_command_passes_against_a_ready_server_and_fails_without_one(name, llama_f32_path):
    command = shlex.split(healthcheck_command(stages(REPO_ROOT / name)[-1]))
    assert command[0] == "python"
    app = create_app(model_settings=[ModelSettings(model=str(llama_f32_path), n_ctx=128, n_parallel=1)])
    with serving(app) as base:
        port = base.rsplit(":", 1)[1]
        ok = subprocess.run([sys.executable, *command[1:]], env={"PORT": port}, capture_output=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
    down = subprocess.run([sys.executable, *command[1:]], env={"PORT": port}, capture_output=True, timeout=30)
    assert down.returncode != 0


def test_the_build_context_leaves_out_local_builds_and_the_local_llama_cpp_tree():
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split("\n"))
    assert {".venv", "build", "dist", "vendor/llama.cpp", "allama/_native*.so"} <= ignored
    # ...but keeps what the wheel is built from
    assert not {"allama", "src_native", "vendor", "CMakeLists.txt", "pyproject.toml", "README.md"} & ignored
