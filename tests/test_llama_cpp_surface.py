"""allama.llama_cpp offers every public name of llama-cpp-python's `llama_cpp.llama_cpp` module.

The reference module loads libllama when imported, so its names are read from its source with
`ast`: functions (its `@ctypes_function` stubs and plain defs), module-level constants and type
aliases, and its ctypes Structure/Union classes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from allama import llama_cpp

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_CANDIDATES = (
    ROOT / "vendor" / "llama_cpp_python" / "llama_cpp" / "llama_cpp.py",  # vendor/fetch_llama_cpp.py unpacks it
    Path("/tmp/lcp/llama_cpp_python-0.3.36/llama_cpp/llama_cpp.py"),
)

_CTYPES_ONLY = "a ctypes argtypes type for declaring prototypes against libllama, which allama does not expose"
_OPT = "llama.cpp's training API (ggml_opt datasets and callbacks from ggml-opt.h): out of scope for allama"

# name -> why allama.llama_cpp does not offer it.
EXCLUDED: dict[str, str] = {
    "ctypes_function": "llama-cpp-python's decorator that binds a stub to libllama: an implementation detail",
    "llama_vocab_p_ctypes": _CTYPES_ONLY,
    "llama_model_p_ctypes": _CTYPES_ONLY,
    "llama_context_p_ctypes": _CTYPES_ONLY,
    "llama_memory_t_ctypes": _CTYPES_ONLY,
    "llama_kv_cache_p_ctypes": _CTYPES_ONLY,
    "llama_adapter_lora_p_ctypes": _CTYPES_ONLY,
    "llama_sampler_p_ctypes": _CTYPES_ONLY,
    "llama_batch_ext_p_ctypes": _CTYPES_ONLY,
    "gguf_context_p_ctypes": _CTYPES_ONLY,
    "gguf_context_p": "only llama_model_init_from_user takes a gguf_context (see there)",
    "llama_model_init_from_user": ("builds a model from a raw gguf_context and a C callback that fills ggml "
                                   "tensors: needs raw ggml pointers in Python"),
    "llama_model_load_from_file_ptr": "takes a C FILE *: load by path (llama_model_load_from_file) instead",
    "llama_adapter_lora_init_from_file_ptr": "takes a C FILE *: load by path (llama_adapter_lora_init) instead",
    "llama_opt_param_filter_all": _OPT,
    "llama_opt_init": _OPT,
    "llama_opt_epoch": _OPT,
}


def reference_source() -> Path:
    for path in REFERENCE_CANDIDATES:
        if path.is_file():
            return path
    pytest.skip("llama-cpp-python's llama_cpp/llama_cpp.py is not here: run vendor/fetch_llama_cpp.py, which "
                "unpacks it into vendor/llama_cpp_python/ (or unpack llama_cpp_python-0.3.36.tar.gz into /tmp/lcp)")


def public_names() -> dict[str, set[str]]:
    """The reference's public top-level names by kind: functions, constants (and type aliases), structs."""
    tree = ast.parse(reference_source().read_text(encoding="utf-8"))
    names: dict[str, set[str]] = {"functions": set(), "constants": set(), "structs": set()}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            kind, found = "functions", [node.name]
        elif isinstance(node, ast.ClassDef):
            kind, found = "structs", [node.name]
        elif isinstance(node, ast.Assign):
            kind, found = "constants", [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            kind, found = "constants", [node.target.id]
        else:
            continue
        names[kind].update(n for n in found if not n.startswith("_"))
    return names


@pytest.mark.parametrize("kind", ["functions", "constants", "structs"])
def test_every_public_name_of_llama_cpp_python_is_offered(kind: str) -> None:
    names = public_names()[kind]
    assert names, f"no {kind} parsed from the reference: has its layout changed?"
    missing = sorted(n for n in names if n not in EXCLUDED and not hasattr(llama_cpp, n))
    assert not missing, f"allama.llama_cpp lacks {len(missing)} of the reference's {len(names)} {kind}: {missing}"


def test_exclusions_are_still_needed_and_each_has_a_reason() -> None:
    names = set().union(*public_names().values())
    stale = sorted(n for n in EXCLUDED if n not in names or hasattr(llama_cpp, n))
    assert not stale, f"excluded names that the reference lacks or allama now offers: {stale}"
    assert all(reason.strip() for reason in EXCLUDED.values())


def test_constants_have_the_reference_values() -> None:
    """Integer constants written as literals (or as other constants) in the reference have the same value here."""
    tree = ast.parse(reference_source().read_text(encoding="utf-8"))
    values: dict[str, int] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if not name.isupper():
            continue
        try:
            value = eval(compile(ast.Expression(node.value), "<reference>", "eval"), {}, dict(values))  # noqa: S307
        except Exception:  # calls into the library (llama_max_devices()) and the like
            continue
        if isinstance(value, int):
            values[name] = value
    wrong = {n: (getattr(llama_cpp, n), v) for n, v in values.items() if getattr(llama_cpp, n, v) != v}
    assert len(values) > 150
    assert not wrong, f"(allama, reference) values differ: {wrong}"
