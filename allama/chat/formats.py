"""The named chat formats llama-cpp-python 0.3.36 registers, rendering the same prompts.

Each format is a few facts about a model family's prompt layout (role markers,
separators, the system block, the stop string); `tests/chat/goldens` holds the
prompts llama-cpp-python renders for fixed conversations, and the tests compare.
Quirks of those layouts (e.g. formats that ignore a system message) are kept on
purpose: users switching from llama-cpp-python get the prompts they had.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from allama.chat.formatter import ChatFormatter, ChatFormatterResponse

Message = dict[str, Any]
MarkedTurn = tuple[str, str | None]  # (role marker, text); text None opens the reply


def system_text(messages: Sequence[Message]) -> str:
    """The first system message's text, or ''."""
    for message in messages:
        if message.get("role") == "system":
            return message.get("content") or ""
    return ""


def turns(messages: Sequence[Message], markers: dict[str, str], reply: str | None = None) -> list[MarkedTurn]:
    """Messages whose role has a marker, as (marker, text) turns; non-string content becomes None.
    `reply` appends the opening of the model's answer."""
    out: list[MarkedTurn] = [(markers[m["role"]], m["content"] if isinstance(m.get("content"), str) else None)
                       for m in messages if m.get("role") in markers]
    if reply is not None:
        out.append((reply, None))
    return out


def join_plain(head: str, items: list[MarkedTurn], sep: str) -> str:
    """marker + text + sep for each turn; an open turn is its marker alone."""
    return head + "".join(marker + text + sep if text else marker for marker, text in items)


def join_colon(head: str, items: list[MarkedTurn], seps: Sequence[str], space_when_open: bool = False) -> str:
    """head + seps[0], then 'marker: text' + alternating separators; an open turn ends 'marker:'."""
    out = head + seps[0]
    for i, (marker, text) in enumerate(items):
        if text:
            out += f"{marker}: {text}{seps[i % len(seps)]}"
        else:
            out += marker + (": " if space_when_open else ":")
    return out


def join_lines(head: str, items: list[MarkedTurn], sep: str) -> str:
    """ChatML-style blocks: 'marker\\ntext' + sep + newline; an empty head is left out."""
    out = head + sep + "\n" if head else ""
    return out + "".join(f"{marker}\n{text}{sep}\n" if text else f"{marker}\n" for marker, text in items)


def _response(prompt: str, stop: str | None = None) -> ChatFormatterResponse:
    return ChatFormatterResponse(prompt=prompt, stop=stop)


def llama_2(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    system = system_text(messages)
    head = f"[INST] <<SYS>>\n{system}\n<</SYS>>" if system else ""
    items = turns(messages, {"user": "<s>[INST]", "assistant": "[/INST]"})
    out = head + " "
    for i, (marker, text) in enumerate(items):
        if head and i == 0:  # the first user turn continues the [INST] block the system opened
            out += (text or "") + (" ", "</s>")[i % 2]
        elif text:
            out += f"{marker}{text} " + (" ", "</s>")[i % 2]
        else:
            out += marker + " "
    return _response(out + "[/INST]")


def llama_3(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    def header(role: str) -> str:
        return f"<|start_header_id|>{role}<|end_header_id|>\n\n"

    markers = {role: header(role) for role in ("system", "user", "assistant")}
    return _response(join_plain("", turns(messages, markers, markers["assistant"]), "<|eot_id|>"), "<|eot_id|>")


def alpaca(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    items = turns(messages, {"user": "### Instruction", "assistant": "### Response"})
    return _response(join_colon(system_text(messages), items, ("\n\n", "</s>")))


def qwen(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    system = system_text(messages) or "You are a helpful assistant."
    items = turns(messages, {"user": "<|im_start|>user", "assistant": "<|im_start|>assistant"},
                  "<|im_start|>assistant")
    return _response(join_lines(f"<|im_start|>system\n{system}", items, "<|im_end|>"), "<|endoftext|>")


def vicuna(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    head = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
            "helpful, detailed, and polite answers to the user's questions.")
    items = turns(messages, {"user": "USER", "assistant": "ASSISTANT"}, "ASSISTANT")
    return _response(join_colon(head, items, (" ", "</s>")))


def oasst_llama(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    head = f"[INST] <<SYS>>\n{system_text(messages)}\n<</SYS>>\n\n"
    items = turns(messages, {"user": "<|prompter|>", "assistant": "<|assistant|>"}, "<|assistant|>")
    return _response(join_plain(head, items, "</s>"))


def _baichuan(user: str, assistant: str) -> Any:
    def render(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
        items = turns(messages, {"user": user, "assistant": assistant}, assistant)
        return _response(join_plain(system_text(messages), items, ""))

    return render


baichuan_2 = _baichuan("<reserved_106>", "<reserved_107>")
baichuan = _baichuan("<reserved_102>", "<reserved_103>")

_OPENBUDDY_SYSTEM = """You are a helpful, respectful and honest INTP-T AI Assistant named Buddy. You are talking to a human User.
Always answer as helpfully and logically as possible, while being safe. Your answers should not include any harmful, political, religious, unethical, racist, sexist, toxic, dangerous, or illegal content. Please ensure that your responses are socially unbiased and positive in nature.
If a question does not make any sense, or is not factually coherent, explain why instead of answering something not correct. If you don't know the answer to a question, please don't share false information.
You can speak fluently in many languages, for example: English, Chinese.
You cannot access the internet, but you have vast knowledge, cutoff: 2021-09.
You are trained by OpenBuddy team, (https://openbuddy.ai, https://github.com/OpenBuddy/OpenBuddy), you are based on LLaMA and Falcon transformers model, not related to GPT or OpenAI.

"""


def openbuddy(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    items = turns(messages, {"user": "User", "assistant": "Assistant"}, "Assistant")
    return _response(join_colon(_OPENBUDDY_SYSTEM, items, ("\n",)))


def redpajama_incite(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    items = turns(messages, {"user": "<human>", "assistant": "<bot>"}, "<bot>")
    return _response(join_colon(system_text(messages), items, ("\n",)), "<human>")


def snoozy(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    default = ("The prompt below is a question to answer, a task to complete, or a conversation to respond to; "
               "decide which and write an appropriate response.")
    items = turns(messages, {"user": "### Prompt", "assistant": "### Response"}, "### Response")
    return _response(join_colon(system_text(messages) or default, items, ("\n",)), "###")


def phind(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    items = turns(messages, {"user": "### User Message", "assistant": "### Assistant"}, "### Assistant")
    return _response(join_colon("### System Prompt\nYou are an intelligent programming assistant.", items, ("\n\n",)))


def intel(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    # llama-cpp-python's layout puts the placeholder itself, not the system message, in the head.
    items = turns(messages, {"user": "### User:", "assistant": "### Assistant:"}, "### Assistant:")
    return _response(join_colon("### System:\n{system_message}", items, ("\n",)))


def open_orca(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    head = ("You are a helpful assistant. Please answer truthfully and write out your thinking step by step to be "
            "sure you get the right answer. If you make a mistake or encounter an error in your thinking, say so out "
            "loud and attempt to correct it. If you don't know or aren't sure about something, say so clearly. You "
            "will act as a professional logician, mathematician, and physicist. You will also act as the most "
            "appropriate type of expert to answer any particular question or solve the relevant problem; state "
            "which expert type your are, if so. Also think of any particular named expert that would be ideal to "
            "answer the relevant question or solve the relevant problem; name and act as them, if appropriate.")
    # llama-cpp-python maps the capitalised roles "User"/"Assistant", so OpenAI's lowercase roles drop out.
    items = turns(messages, {"User": "User", "Assistant": "Assistant"}, "Assistant")
    return _response(join_colon(head, items, ("<|end_of_turn|>\n",), space_when_open=True), "User")


def mistrallite(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    items = turns(messages, {"user": "<|prompter|>", "assistant": "</s>\n<|assistant|>"}, "</s>\n<|assistant|>")
    return _response(join_plain(f"<|system|>{system_text(messages)}</s>", items, " "))


def zephyr(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    items = turns(messages, {"user": "<|user|>\n", "assistant": "<|assistant|>\n"}, "<|assistant|>\n")
    return _response(join_lines(f"<|system|>\n{system_text(messages)}", items, "</s>"), "</s>")


def pygmalion(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    items = turns(messages, {"user": "<|user|>", "assistant": "<|model|>"}, "<|model|>")
    return _response(join_lines(f"<|system|>{system_text(messages)}", items, "\n"), "\n")


def chatml(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    items = turns(messages, {"user": "<|im_start|>user", "assistant": "<|im_start|>assistant"},
                  "<|im_start|>assistant")
    return _response(join_lines(f"<|im_start|>system\n{system_text(messages)}", items, "<|im_end|>"), "<|im_end|>")


def mistral_instruct(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    out = ""
    for message in messages:
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str):
            out += "[INST] " + content
        elif message.get("role") == "assistant" and content is not None:
            out += " [/INST]" + content + "</s>"
    return _response(out + " [/INST]", "</s>")


def chatglm3(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    items = turns(messages, {"user": "<|user|>", "assistant": "<|assistant|>"}, "<|assistant|>")
    out = f"<|system|>\n{system_text(messages)}"
    out += "".join(f"{marker}\n {text}" if text else marker for marker, text in items)
    return _response(out, "</s>")


def openchat(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    items = turns(messages, {"user": "GPT4 Correct User: ", "assistant": "<|end_of_turn|>GPT4 Correct Assistant: "},
                  "<|end_of_turn|>GPT4 Correct Assistant: ")
    return _response(join_lines(f"{system_text(messages)}<|end_of_turn|>", items, "<|end_of_turn|>"),
                     "<|end_of_turn|>")


def saiga(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    items = turns(messages, {"user": "user", "bot": "bot", "system": "system"})
    out = "".join(f"<s>{role}\n{text}</s>" if text else f"<s>{role}\n" for role, text in items)
    return _response((out + "<s>bot").strip())


def gemma(messages: Sequence[Message], **_: Any) -> ChatFormatterResponse:
    # Gemma has no system role: a system message is left out, as in llama-cpp-python.
    items = turns(messages, {"user": "<start_of_turn>user\n", "assistant": "<start_of_turn>model\n"},
                  "<start_of_turn>model\n")
    return _response(join_plain("", items, "<end_of_turn>\n"), "<end_of_turn>\n")


# The named formats, as the registry (allama.chat.registry) starts with them.
BUILTIN_CHAT_FORMATS: dict[str, ChatFormatter] = {
    "llama-2": llama_2,
    "llama-3": llama_3,
    "alpaca": alpaca,
    "qwen": qwen,
    "vicuna": vicuna,
    "oasst_llama": oasst_llama,
    "baichuan-2": baichuan_2,
    "baichuan": baichuan,
    "openbuddy": openbuddy,
    "redpajama-incite": redpajama_incite,
    "snoozy": snoozy,
    "phind": phind,
    "intel": intel,
    "open-orca": open_orca,
    "mistrallite": mistrallite,
    "zephyr": zephyr,
    "pygmalion": pygmalion,
    "chatml": chatml,
    "mistral-instruct": mistral_instruct,
    "chatglm3": chatglm3,
    "openchat": openchat,
    "saiga": saiga,
    "gemma": gemma,
}
