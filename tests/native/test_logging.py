"""llama.cpp's log lines reach Python logging only when asked for."""

from __future__ import annotations

import logging

import pytest

from allama import _native


@pytest.fixture()
def forwarding():
    yield
    _native.set_log_level(None)


def test_quiet_by_default(llama_f32_path, caplog):
    assert _native.log_level() is None
    with caplog.at_level(logging.DEBUG, logger="allama.native"):
        _native.Model.load(str(llama_f32_path))
    assert not [r for r in caplog.records if r.name == "allama.native"]


def test_forwarded_lines_reach_the_allama_native_logger(llama_f32_path, caplog, forwarding):
    _native.set_log_level(logging.DEBUG)
    assert _native.log_level() == logging.DEBUG
    with caplog.at_level(logging.DEBUG, logger="allama.native"):
        _native.Model.load(str(llama_f32_path))
    records = [r for r in caplog.records if r.name == "allama.native"]
    assert records
    assert any("llama" in r.getMessage() for r in records)
    assert all("\n" not in r.getMessage() for r in records)  # one record per line


def test_level_threshold_filters_lines(llama_f32_path, caplog, forwarding):
    _native.set_log_level(logging.ERROR)
    with caplog.at_level(logging.DEBUG, logger="allama.native"):
        _native.Model.load(str(llama_f32_path))
    assert all(r.levelno >= logging.ERROR for r in caplog.records if r.name == "allama.native")


def test_a_failing_load_puts_llama_cpp_reason_in_the_exception(tmp_path, llama_f32_path):
    path = tmp_path / "cut.gguf"
    path.write_bytes(llama_f32_path.read_bytes()[: 200_000])
    with pytest.raises(ValueError) as info:
        _native.Model.load(str(path))
    message = str(info.value)
    assert str(path) in message
    assert "llama.cpp gave no reason" not in message
