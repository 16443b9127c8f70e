"""Every built-in chat format renders exactly what llama-cpp-python 0.3.36 renders
(goldens made by goldens/generate_chat_format_goldens.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from allama.chat import get_chat_format, list_chat_formats

GOLDENS = json.loads((Path(__file__).parent / "goldens" / "chat_formats.json").read_text())


def test_the_same_set_of_formats_as_llama_cpp_python():
    assert set(GOLDENS) <= set(list_chat_formats())
    assert len(GOLDENS) == 23


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_format_renders_llama_cpp_python_prompts(name):
    formatter = get_chat_format(name)
    for case in GOLDENS[name]:
        result = formatter(messages=case["messages"])
        assert result.prompt == case["prompt"], case["messages"]
        assert result.stop == case["stop"]


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown chat format 'nope'"):
        get_chat_format("nope")
