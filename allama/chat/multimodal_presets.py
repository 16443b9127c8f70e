"""llama-cpp-python's named multimodal chat handlers, as presets of `MTMDChatHandler`.

Each names a model family's prompt format (a Jinja template that places the media
itself) and its default system message; the projector, the media reading and the
batching are MTMDChatHandler's. Templates see OpenAI messages whose media parts carry
the media marker in place of their URL or data, so a subclass may set its own
`CHAT_FORMAT` written the way llama-cpp-python's are (`content.image_url.url` renders
the image). Where llama-cpp-python's template differs from the family's published
format, these follow the published one (docs/multimodal.md lists the differences).
"""

from __future__ import annotations

from allama.chat.multimodal import MTMDChatHandler

# Shared macros: a message's media (each followed by `after`), its text, or both in order.
_PARTS = (
    "{% macro media(content, after='') %}"
    "{% if content is not string and content is not none %}"
    "{% for part in content if part.type == 'image_url' or part.type == 'input_audio' %}"
    "{{ part.image_url.url if part.type == 'image_url' else part.input_audio.data }}{{ after }}"
    "{% endfor %}{% endif %}"
    "{% endmacro %}"
    "{% macro text(content) %}"
    "{% if content is string %}{{ content }}"
    "{% elif content is not none %}"
    "{% for part in content if part.type == 'text' %}{{ part.text }}{% endfor %}"
    "{% endif %}"
    "{% endmacro %}"
    "{% macro inline(content) %}"
    "{% if content is string %}{{ content }}"
    "{% elif content is not none %}"
    "{% for part in content %}"
    "{% if part.type == 'text' %}{{ part.text }}"
    "{% elif part.type == 'image_url' %}{{ part.image_url.url }}"
    "{% elif part.type == 'input_audio' %}{{ part.input_audio.data }}"
    "{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "{% endmacro %}"
)

# The formatter trims a newline that follows a block tag (as Hugging Face templates
# expect), so a turn that opens with one writes it as {{ '\n' }}.
_VICUNA_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives "
                  "helpful, detailed, and polite answers to the human's questions.")


def _chatml(body: str, end: str) -> str:
    """ChatML turns (`<|im_start|>role\\n...<|im_end|>` + `end`) with `body` as each turn's content."""
    return (_PARTS + "{% for m in messages %}<|im_start|>{{ m.role }}\n" + body + "<|im_end|>" + end
            + "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


class Llava15ChatHandler(MTMDChatHandler):
    """LLaVA 1.5 (Vicuna): `SYSTEM\\nUSER: <image>question\\nASSISTANT: `."""

    DEFAULT_SYSTEM_MESSAGE: str | None = _VICUNA_SYSTEM
    CHAT_FORMAT: str | None = (
        _PARTS + "{% for m in messages %}"
        "{% if m.role == 'system' %}{{ text(m.content) }}"
        "{% elif m.role == 'user' %}{{ '\\n' }}USER: {{ media(m.content) }}{{ text(m.content) }}"
        "{% elif m.role == 'assistant' and m.content %}{{ '\\n' }}ASSISTANT: {{ text(m.content) }}"
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '\\n' }}ASSISTANT: {% endif %}"
    )


class Llava16ChatHandler(MTMDChatHandler):
    """LLaVA 1.6 (Vicuna): `SYSTEM USER: <image>\\nquestion ASSISTANT:`."""

    DEFAULT_SYSTEM_MESSAGE = _VICUNA_SYSTEM + " "
    CHAT_FORMAT = (
        _PARTS + "{% for m in messages %}"
        "{% if m.role == 'system' %}{{ text(m.content) }}"
        "{% elif m.role == 'user' %}USER: {{ media(m.content, '\n') }}{{ text(m.content) }} "
        "{% elif m.role == 'assistant' %}ASSISTANT: {{ text(m.content) }}{{ eos_token }}"
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    )


class ObsidianChatHandler(MTMDChatHandler):
    """Obsidian: ChatML with `###` closing each turn."""

    DEFAULT_SYSTEM_MESSAGE = _VICUNA_SYSTEM
    CHAT_FORMAT = (
        _PARTS + "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.role == 'system' %}{{ text(m.content) }}\n"
        "{% else %}{{ media(m.content) }}{{ text(m.content) }}{% endif %}"
        "###\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


class MoondreamChatHandler(MTMDChatHandler):
    """moondream2: `<image>\\n\\nQuestion: question\\n\\nAnswer:`."""

    DEFAULT_SYSTEM_MESSAGE = None
    CHAT_FORMAT = (
        _PARTS + "{% for m in messages %}"
        "{% if m.role == 'user' %}{{ media(m.content, '\n\n') }}Question: {{ text(m.content) }}\n\n"
        "{% elif m.role == 'assistant' %}Answer:{{ text(m.content) }}\n\n"
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}Answer:{% endif %}"
    )


class NanoLlavaChatHandler(MTMDChatHandler):
    """nanoLLaVA: ChatML without a newline after `<|im_end|>`; `<image>\\n` before the question."""

    DEFAULT_SYSTEM_MESSAGE = "Answer the question"
    CHAT_FORMAT = _chatml("{{ media(m.content, '\n') }}{{ text(m.content) }}", "")


class Llama3VisionAlphaChatHandler(MTMDChatHandler):
    """llama-3-vision-alpha: Llama 3 turns, the image before the question."""

    DEFAULT_SYSTEM_MESSAGE = None
    CHAT_FORMAT = (
        _PARTS + "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
        "{{ media(m.content) }}{{ text(m.content) }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    )


Llama3VisionAlpha = Llama3VisionAlphaChatHandler


class MiniCPMv26ChatHandler(MTMDChatHandler):
    """MiniCPM-V 2.6: ChatML, media before the question."""

    DEFAULT_SYSTEM_MESSAGE = "You are a helpful assistant."
    CHAT_FORMAT = _chatml("{{ media(m.content) }}{{ text(m.content) }}", "\n")


class Qwen25VLChatHandler(MTMDChatHandler):
    """Qwen2.5-VL: ChatML, media where they stand among the text (mtmd adds the vision
    start/end tokens)."""

    DEFAULT_SYSTEM_MESSAGE = "You are a helpful assistant."
    CHAT_FORMAT = _chatml("{{ inline(m.content) }}", "\n")


class Gemma4ChatHandler(MTMDChatHandler):
    """Gemma 4 (`chat_format="gemma4"`): its prompts come from the model's own chat template
    (the one in its GGUF), with each image or audio clip where its content part was; mtmd
    wraps the media tokens in Gemma 4's delimiters (`<|image>`...`<image|>`,
    `<|audio>`...`<audio|>`)."""


# llama-cpp-python's server `chat_format` names for these handlers.
HANDLERS_BY_CHAT_FORMAT: dict[str, type[MTMDChatHandler]] = {
    "mtmd": MTMDChatHandler,
    "llava-1-5": Llava15ChatHandler,
    "llava-1-6": Llava16ChatHandler,
    "obsidian": ObsidianChatHandler,
    "moondream": MoondreamChatHandler,
    "nanollava": NanoLlavaChatHandler,
    "llama-3-vision-alpha": Llama3VisionAlphaChatHandler,
    "minicpm-v-2.6": MiniCPMv26ChatHandler,
    "qwen2.5-vl": Qwen25VLChatHandler,
    "gemma4": Gemma4ChatHandler,
}


__all__ = [
    "Gemma4ChatHandler",
    "Llama3VisionAlpha",
    "Llama3VisionAlphaChatHandler",
    "Llava15ChatHandler",
    "Llava16ChatHandler",
    "MiniCPMv26ChatHandler",
    "MoondreamChatHandler",
    "NanoLlavaChatHandler",
    "ObsidianChatHandler",
    "Qwen25VLChatHandler",
]
