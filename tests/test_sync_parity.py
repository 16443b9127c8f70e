"""allama.sync.Llama keeps in step with allama.Llama: every public method and property of the
async class has a blocking twin taking the same parameters (names, kinds, defaults), and
the async class's coroutines are plain methods there; the same for the two LlamaSessions."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from allama import Llama, LlamaSession, sync

# What only one twin has, and why.
ASYNC_ONLY = {
    "load": "the blocking constructor loads the model itself",
    "aclose": "close() is the blocking twin's",
}
SYNC_ONLY = {"eval", "sample", "generate"}  # llama-cpp-python's single-sequence API (allama.sequential)


def public_members(cls: type) -> dict[str, Any]:
    """Public methods, class and static methods and properties of `cls`, with __init__ and __call__."""
    members = {}
    for name in dir(cls):
        if name.startswith("_") and name not in ("__init__", "__call__"):
            continue
        member = inspect.getattr_static(cls, name)
        if inspect.isfunction(member) or isinstance(member, (staticmethod, classmethod, property)):
            members[name] = member
    return members


def is_method(member: Any) -> bool:
    return inspect.isfunction(member) or isinstance(member, (staticmethod, classmethod))


def parameters(cls: type, name: str) -> list[tuple[str, Any, Any]]:
    """(name, kind, default) of each parameter of cls.name, `self` or `cls` left out."""
    params = list(inspect.signature(getattr(cls, name)).parameters.values())
    if inspect.isfunction(inspect.getattr_static(cls, name)):
        params = params[1:]  # self
    return [(p.name, p.kind, p.default) for p in params]


ASYNC = public_members(Llama)
SYNC = public_members(sync.Llama)
SHARED_METHODS = sorted(name for name, member in ASYNC.items() if is_method(member) and name in SYNC)


def test_every_async_member_has_a_blocking_twin():
    missing = sorted(set(ASYNC) - set(SYNC) - set(ASYNC_ONLY))
    assert not missing, f"allama.sync.Llama lacks {missing}"
    assert set(ASYNC_ONLY) <= set(ASYNC), "an async-only exception names nothing the async class has"


def test_the_blocking_twin_adds_only_the_single_sequence_api_as_methods():
    extra = sorted(name for name, member in SYNC.items() if is_method(member) and name not in ASYNC)
    assert extra == sorted(SYNC_ONLY)


def test_properties_are_properties_on_both():
    for name, member in ASYNC.items():
        if isinstance(member, property):
            assert isinstance(SYNC[name], property), name


@pytest.mark.parametrize("name", SHARED_METHODS)
def test_the_twins_take_the_same_parameters(name):
    assert parameters(sync.Llama, name) == parameters(Llama, name)


def test_the_async_coroutines_are_blocking_methods_of_the_twin():
    coroutines = [name for name in SHARED_METHODS if inspect.iscoroutinefunction(getattr(Llama, name))]
    assert {"create_completion", "create_chat_completion", "embed", "save_state"} <= set(coroutines)
    assert not [name for name in coroutines if inspect.iscoroutinefunction(getattr(sync.Llama, name))]


def test_the_sessions_are_twins_too():
    async_session, sync_session = public_members(LlamaSession), public_members(sync.LlamaSession)
    assert set(async_session) - {"aclose"} == set(sync_session) - {"close"}
    for name in set(async_session) & set(sync_session):
        if is_method(async_session[name]) and name != "__init__":
            assert parameters(sync.LlamaSession, name) == parameters(LlamaSession, name), name


def test_a_difference_in_parameters_is_seen():
    class Async:
        async def create(self, prompt: str, n: int = 1) -> None: ...

    class Blocking:
        def create(self, prompt: str, n: int = 2) -> None: ...

    assert parameters(Async, "create") != parameters(Blocking, "create")
