"""The tiny models of allama.testing.architectures: llama.cpp loads each as its architecture
with its kind of memory, and Q4_K_M really quantizes their matrices (no silent fallbacks)."""

from __future__ import annotations

import pytest

from allama import _native
from allama.testing.architectures import ARCHITECTURES, build_architecture, main

# (sliding window, recurrent, hybrid) as llama.cpp reports them
MEMORY = {
    "qwen2": (0, False, False),
    "qwen3": (0, False, False),
    "gemma3": (32, False, False),
    "phi3": (0, False, False),
    "qwen3moe": (0, False, False),
    "lfm2": (0, False, True),
    "mamba": (0, True, False),
}

# Tensors llama.cpp keeps unquantized
UNQUANTIZED = ("_norm.weight", "ffn_gate_inp.weight", ".bias")


def test_every_architecture_has_a_memory_kind():
    assert set(MEMORY) == set(ARCHITECTURES)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_loads_as_its_architecture_with_its_memory(arch, architecture_model):
    model = _native.Model.load(str(architecture_model(arch)))
    assert model.metadata["general.architecture"] == arch
    assert (model.n_swa, model.is_recurrent, model.is_hybrid) == MEMORY[arch]
    assert (model.n_embd, model.n_layer) == (256, 2)
    if arch == "qwen3moe":
        assert model.metadata["qwen3moe.expert_count"] == "4"
        assert model.metadata["qwen3moe.expert_used_count"] == "2"


# (gguf's reader takes seconds over a vocabulary: two files, fused projections and experts)
@pytest.mark.parametrize("arch", ["phi3", "qwen3moe"])
def test_q4_k_m_quantizes_every_matrix(arch, architecture_model):
    from allama.testing.model_builder import _gguf

    path = architecture_model(arch, "Q4_K_M")
    assert _native.Model.load(str(path)).ftype == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    reader = _gguf().GGUFReader(path)
    types = {t.name: t.tensor_type.name for t in reader.tensors if not t.name.endswith(UNQUANTIZED)}
    assert types and set(types.values()) <= {"Q4_K", "Q6_K"}, types
    assert "Q4_K" in types.values()


def test_unknown_architecture_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown architecture"):
        build_architecture("gpt5", tmp_path / "x.gguf")


def test_command_line_builds_a_model(tmp_path, capsys):
    out = tmp_path / "phi3.gguf"
    assert main(["phi3", str(out), "--dtype", "f32", "--seed", "7"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    model = _native.Model.load(str(out))
    assert model.metadata["general.architecture"] == "phi3" and model.ftype == 0  # all F32
