"""An image question through allama's chat path gives llama.cpp's own answer: the greedy text
of `llama-mtmd-cli` (the same llama.cpp tree, built by benchmarks/build_peers.sh) on the same
model, projector, image and question, for a template that writes BOS and one that leaves
it to the tokenizer. Skips where that peer is not built."""

from __future__ import annotations

import base64
import dataclasses
import subprocess

import pytest

from allama import Llama
from allama.chat.multimodal import MTMDChatHandler
from allama.testing.model_builder import build_llama

from ..paths import REPO_ROOT
from ..tiny_models import TINY_LLAMA
from ..native.test_media import _png
from .test_multimodal import NO_BOS_TEMPLATE, PNG, TEMPLATE, paths  # noqa: F401  (the fixture)

pytestmark = pytest.mark.anyio

MTMD_CLI = REPO_ROOT / "build" / "peers" / "bin" / "llama-mtmd-cli"
QUESTION = "What is this?"
N = 32  # (8 tokens were the same with or without BOS on this model; 32 are not)


def mtmd_cli_answer(model, projector, image, question: str) -> str:
    """llama-mtmd-cli's greedy answer: it renders the user message (the media marker, then the
    question) with the model's template through --jinja and tokenizes it with special tokens."""
    run = subprocess.run(
        [str(MTMD_CLI), "-m", str(model), "--mmproj", str(projector), "--image", str(image), "-p", question,
         "-n", str(N), "--temp", "0", "-t", "1", "-c", "512", "--jinja", "--no-warmup", "--ignore-eos"],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


@pytest.mark.skipif(not MTMD_CLI.exists(), reason="llama-mtmd-cli is not built: bash benchmarks/build_peers.sh")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("template", [TEMPLATE, NO_BOS_TEMPLATE], ids=["writes-bos", "leaves-bos"])
async def test_an_image_question_answers_as_llama_mtmd_cli(models_dir, paths, template, tmp_path):  # noqa: F811
    model = build_llama(models_dir / f"vision-chat-{len(template)}.gguf",
                        dataclasses.replace(TINY_LLAMA, chat_template=template))[0]
    image = tmp_path / "image.png"
    image.write_bytes(PNG)
    expected = mtmd_cli_answer(model, paths[1], image, QUESTION)
    async with Llama(str(model), n_ctx=512, n_threads=1, chat_handler=MTMDChatHandler(str(paths[1]), n_threads=1)) as llm:
        url = "data:image/png;base64," + base64.b64encode(PNG).decode()
        messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                 {"type": "text", "text": QUESTION}]}]
        out = await llm.create_chat_completion(messages, max_tokens=N, temperature=0.0, ignore_eos=True)
    answer = out["choices"][0]["message"]["content"]
    assert answer and answer in expected, (answer, expected)
