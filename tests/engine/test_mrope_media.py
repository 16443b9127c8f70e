"""M-RoPE media prompts (Qwen2-VL, and Qwen2.5-VL's windowed-attention projector) through the
engine: an image takes fewer positions than tokens, so positions after it lag token indices;
batched, reused and cut prefixes must all use positions, and give what evaluating the prompt
alone gives."""

from __future__ import annotations

import anyio
import pytest

from allama import Llama
from allama.chat import Qwen25VLChatHandler
from allama.engine.media_prompt import media_prompt

from ..conftest import make_context
from ..greedy import greedy_tokens
from ..native.test_media import _png
from ..tiny_models import GREEDY

pytestmark = pytest.mark.anyio

PROMPT = "Look: <__media__> What is it? Say it:"
N_TOKENS = 6  # generated per request


@pytest.fixture(scope="module")
def llm(qwen2vl_paths):
    model = Llama(str(qwen2vl_paths[0]), n_ctx=256, n_parallel=4, n_batch=64, type_k=0, type_v=0,
                  chat_handler=Qwen25VLChatHandler(str(qwen2vl_paths[1]), n_threads=2))
    yield model
    model.close()


async def prompt_of(llm: Llama, image: bytes, text: str = PROMPT):
    context = await llm.chat_handler.media_context(llm)
    chunks = context.tokenize(text, [context.bitmap_from_bytes(image)], True, True)
    return chunks, *media_prompt(chunks, context)


async def greedy_text(llm: Llama, prompt, **fields) -> str:
    """The text of N_TOKENS greedy tokens after the prompt."""
    return (await llm.create_completion(prompt, max_tokens=N_TOKENS, **GREEDY, **fields))["choices"][0]["text"]


def reference(llm: Llama, chunks, n: int) -> list[int]:
    """Greedy tokens after the prompt, evaluated alone by mtmd in a context of its own."""
    media = llm.chat_handler._load(llm._model)
    ctx = make_context(llm._model, n_ctx=256, n_batch=64, n_seq_max=1, type_k=0, type_v=0)
    return greedy_tokens(ctx, media.eval_chunks(ctx, chunks, 0, 0, 64), n)


async def test_a_media_prompt_generates_what_mtmd_alone_does(llm):
    chunks, tokens, spans = await prompt_of(llm, _png(40, 24))
    assert chunks.n_pos < chunks.n_tokens  # M-RoPE: the image takes fewer positions than tokens
    out = await llm.create_completion(tokens, media=spans, max_tokens=N_TOKENS, **GREEDY)
    assert out["choices"][0]["text"] == llm.detokenize(reference(llm, chunks, N_TOKENS)).decode("utf-8", "ignore")
    assert out["usage"]["completion_tokens"] == N_TOKENS


async def test_concurrent_image_and_text_requests_match_their_runs_alone(llm):
    requests = [await prompt_of(llm, _png(40, 24)), await prompt_of(llm, _png(16, 48)),
                await prompt_of(llm, _png(24, 24), "Two: <__media__> and more text after it")]
    alone = []
    for _, tokens, spans in requests:
        alone.append(await greedy_text(llm, tokens, media=spans))
    text_alone = await greedy_text(llm, "Plain text between the images")
    together: dict[int, str] = {}

    async def run(i: int) -> None:
        if i == len(requests):
            together[i] = await greedy_text(llm, "Plain text between the images")
        else:
            _, tokens, spans = requests[i]
            together[i] = await greedy_text(llm, tokens, media=spans)

    async with anyio.create_task_group() as tg:
        for i in range(len(requests) + 1):
            tg.start_soon(run, i)
    assert [together[i] for i in range(len(requests))] == alone and together[len(requests)] == text_alone
    assert len(set(alone[:2])) == 2


async def test_a_reused_prefix_continues_at_the_right_positions(llm):
    image = _png(32, 40)
    chunks, tokens, spans = await prompt_of(llm, image, "Look: <__media__> first question?")
    await llm.create_completion(tokens, media=spans, max_tokens=N_TOKENS, **GREEDY)
    # the same image and text, then more text: the kept KV through the image is reused and the
    # new text must be placed after the image's positions, not its token count
    chunks2, tokens2, spans2 = await prompt_of(llm, image, "Look: <__media__> first question? And a second one:")
    out = await llm.create_completion(tokens2, media=spans2, max_tokens=N_TOKENS, **GREEDY)
    assert out["usage"]["prompt_tokens_details"]["cached_tokens"] > spans2[0].end
    assert out["choices"][0]["text"] == llm.detokenize(reference(llm, chunks2, N_TOKENS)).decode("utf-8", "ignore")


async def test_a_chat_with_an_image_through_the_qwen_preset(llm):
    import base64

    url = "data:image/png;base64," + base64.b64encode(_png(24, 32)).decode()
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": "What is this?"}]}]
    a = await llm.create_chat_completion(messages, max_tokens=5, **GREEDY)
    b = await llm.create_chat_completion(messages, max_tokens=5, **GREEDY, stream=True)
    streamed = "".join([c["choices"][0]["delta"].get("content") or "" async for c in b if c["choices"]])
    assert streamed == a["choices"][0]["message"]["content"]
    assert a["usage"]["prompt_tokens"] > 8


# --- Qwen2.5-VL: the same text model with a "qwen2.5vl_merger" projector (windowed attention) ---

QWEN25VL_CHAT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                 "<|im_start|>user\n<__media__>{text}<|im_end|>\n<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def llm25(qwen25vl_paths):
    # n_keep=0: no finished KV is kept, so every request encodes its image itself
    model = Llama(str(qwen25vl_paths[0]), n_ctx=256, n_parallel=4, n_batch=64, type_k=0, type_v=0, n_keep=0,
                  chat_handler=Qwen25VLChatHandler(str(qwen25vl_paths[1]), n_threads=2))
    yield model
    model.close()


def image_chat(image: bytes, text: str) -> list[dict]:
    import base64

    url = "data:image/png;base64," + base64.b64encode(image).decode()
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": text}]}]


async def test_a_qwen25vl_image_chat_replies_what_mtmd_alone_evaluates_of_its_prompt(llm25):
    image = _png(120, 16)  # 15 x 2 tokens: two attention windows
    reply = await llm25.create_chat_completion(image_chat(image, "What is this?"), max_tokens=6, temperature=0.0)
    chunks, _, _ = await prompt_of(llm25, image, QWEN25VL_CHAT.format(text="What is this?"))
    assert chunks.n_pos < chunks.n_tokens
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["prompt_tokens"] == chunks.n_tokens
    expected = llm25.detokenize(reference(llm25, chunks, 6)).decode("utf-8", "ignore")
    assert reply["choices"][0]["message"]["content"] == expected


async def test_two_qwen25vl_image_chats_batched_reply_as_they_do_alone(llm25):
    images = [(_png(120, 16), "What is this?"), (_png(24, 40), "Describe it.")]
    chats = [image_chat(image, text) for image, text in images]
    alone = [(await llm25.create_chat_completion(chat, max_tokens=6, temperature=0.0))["choices"][0]["message"]
             ["content"] for chat in chats]
    together: dict[int, dict] = {}

    async def run(i: int) -> None:
        together[i] = await llm25.create_chat_completion(chats[i], max_tokens=6, temperature=0.0)

    async with anyio.create_task_group() as tg:
        for i in range(len(chats)):
            tg.start_soon(run, i)
    assert [together[i]["choices"][0]["message"]["content"] for i in range(len(chats))] == alone
    assert alone[0] != alone[1]
    for i, (image, text) in enumerate(images):  # each image was encoded in the batch, not reused
        _, _, spans = await prompt_of(llm25, image, QWEN25VL_CHAT.format(text=text))
        assert together[i]["usage"]["prompt_tokens_details"]["cached_tokens"] <= spans[0].start
