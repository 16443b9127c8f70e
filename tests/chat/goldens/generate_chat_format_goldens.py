"""Generates chat_formats.json: the prompts llama-cpp-python 0.3.36 renders for each of
its built-in chat formats on fixed conversations. The goldens are llama-cpp-python's
output, not our opinion; tests/chat/test_formats.py checks allama against them.

Run once (needs llama-cpp-python 0.3.36, e.g. from benchmarks/build_peers.sh):
    LLAMA_CPP_LIB_PATH=build/peers/bin python tests/chat/goldens/generate_chat_format_goldens.py
"""

from __future__ import annotations

import json
from pathlib import Path

from llama_cpp import llama_chat_format as lcf

FUNCTIONS = {
    "llama-2": "format_llama2", "llama-3": "format_llama3", "alpaca": "format_alpaca", "qwen": "format_qwen",
    "vicuna": "format", "oasst_llama": "format_oasst_llama", "baichuan-2": "format_baichuan2",
    "baichuan": "format_baichuan", "openbuddy": "format_openbuddy", "redpajama-incite": "format_redpajama_incite",
    "snoozy": "format_snoozy", "phind": "format_phind", "intel": "format_intel", "open-orca": "format_open_orca",
    "mistrallite": "format_mistrallite", "zephyr": "format_zephyr", "pygmalion": "format_pygmalion",
    "chatml": "format_chatml", "mistral-instruct": "format_mistral_instruct", "chatglm3": "format_chatglm3",
    "openchat": "format_openchat", "saiga": "format_saiga", "gemma": "format_gemma",
}

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke\nabout cats."},
    ],
    [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": "Second question"},
    ],
]


KNOWN_TEMPLATES = {  # the GGUF templates llama-cpp-python maps to a named format
    "chatml": "CHATML_CHAT_TEMPLATE",
    "mistral-instruct": "MISTRAL_INSTRUCT_CHAT_TEMPLATE",
    "mistral-instruct (mixtral)": "MIXTRAL_INSTRUCT_CHAT_TEMPLATE",
    "llama-3": "LLAMA3_INSTRUCT_CHAT_TEMPLATE",
}


def known_templates() -> None:
    out = {label: {"format": label.split(" ")[0], "template": getattr(lcf, const)}
           for label, const in KNOWN_TEMPLATES.items()}
    path = Path(__file__).with_name("known_templates.json")
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


def main() -> None:
    known_templates()
    goldens = {}
    for name, function in FUNCTIONS.items():
        fn = getattr(lcf, function)
        cases = []
        for messages in CONVERSATIONS:
            result = fn(messages=messages)
            cases.append({"messages": messages, "prompt": result.prompt, "stop": result.stop})
        goldens[name] = cases
    out = Path(__file__).with_name("chat_formats.json")
    out.write_text(json.dumps(goldens, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out} ({len(goldens)} formats)")


if __name__ == "__main__":
    main()
