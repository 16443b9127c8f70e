"""`allama complete`, `tokenize`, `embed` and `bench`, run as a user runs them (a subprocess
on the tiny fixture models)."""

from __future__ import annotations

import json

import numpy as np

from .running import allama

ONE_THREAD = ("--n_threads", "1")


def test_complete_streams_the_continuation_and_shows_loading(llama_f32_path):
    proc = allama("complete", "-m", llama_f32_path, *ONE_THREAD, "Hello", "--max-tokens", "6", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert "loading llama-f32.gguf" in proc.stderr and "100%" in proc.stderr


def test_complete_json_reads_the_prompt_from_stdin(llama_f32_path):
    proc = allama("complete", "-m", llama_f32_path, *ONE_THREAD, "-", "--max-tokens", "4", "--json",
                  "--temperature", "0", "-q", input="Once upon a time")
    assert proc.returncode == 0, proc.stderr
    response = json.loads(proc.stdout)
    assert response["usage"]["completion_tokens"] == 4
    assert response["choices"][0]["finish_reason"] == "length"
    assert proc.stderr == ""  # --quiet: no progress bar


def test_a_missing_model_is_a_one_line_error(tmp_path):
    proc = allama("complete", "-m", tmp_path / "absent.gguf", "Hi", "-q")
    assert proc.returncode == 1
    assert "absent.gguf" in proc.stderr and "Traceback" not in proc.stderr


def test_tokenize_prints_ids_and_pieces(llama_f32_path):
    proc = allama("tokenize", "-m", llama_f32_path, "Hello world", "-q")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [json.loads(piece) for _, piece in rows] == ["<s>", " Hello", " world"]
    ids = allama("tokenize", "-m", llama_f32_path, "-", "--ids", "--no-bos", "-q", input="Hello world")
    assert ids.returncode == 0, ids.stderr
    assert json.loads(ids.stdout) == [int(token) for token, _ in rows[1:]]


def test_embed_text_lines_to_jsonl(bert_path, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("hello world\n\nsecond line\nthird\n")
    proc = allama("embed", "-m", bert_path, *ONE_THREAD, source)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2]  # the blank line is skipped
    assert len({len(r["embedding"]) for r in records}) == 1
    assert "embedding" in proc.stderr and "3/3" in proc.stderr  # the progress bar


def test_embed_jsonl_to_normalized_npy(bert_path, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "a cat"}\n{"text": "a dog", "id": 7}\n')
    out = tmp_path / "vectors.npy"
    proc = allama("embed", "-m", bert_path, *ONE_THREAD, source, "-o", out, "--normalize", "--pooling", "mean")
    assert proc.returncode == 0, proc.stderr
    vectors = np.load(out)
    assert vectors.shape[0] == 2
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    lines = allama("embed", "-m", bert_path, *ONE_THREAD, "-", "--normalize", "--pooling", "mean", "-q",
                   input="a cat\na dog\n")
    assert lines.returncode == 0, lines.stderr
    np.testing.assert_allclose([json.loads(l)["embedding"] for l in lines.stdout.splitlines()], vectors, rtol=1e-4)


def test_bench_prints_a_table_per_level(llama_f32_path):
    proc = allama("bench", "-m", llama_f32_path, *ONE_THREAD, "--streams", "1,2", "--max-tokens", "6")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1:3] for row in rows] == [[" 1 ", " 6 "], [" 2 ", " 12 "]]
    assert "bench" in proc.stderr and "3/3" in proc.stderr  # the progress bar over the streams


def test_bench_plot_without_matplotlib_says_so(llama_f32_path, tmp_path):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        proc = allama("bench", "-m", llama_f32_path, "--plot", tmp_path / "p.png", "-q")
        assert proc.returncode == 2
        assert "pip install matplotlib" in proc.stderr
    else:
        proc = allama("bench", "-m", llama_f32_path, *ONE_THREAD, "--streams", "1,2", "--max-tokens", "4",
                      "--plot", tmp_path / "p.png", "-q")
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_measures_a_running_server(llama_f32_path):
    from allama.server import Settings, create_app
    from tests.server.live_server import serving

    app = create_app(Settings(model=str(llama_f32_path), model_alias="tiny", n_ctx=256, n_parallel=2, n_threads=1))
    with serving(app) as base:
        proc = allama("bench", "--url", base + "/v1", "--streams", "1,2", "--max-tokens", "5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(base + "/v1, 5 tokens per stream")
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1:3] for row in rows] == [[" 1 ", " 5 "], [" 2 ", " 10 "]]
