"""llama.cpp's C API under its C names and argument order (llama-cpp-python's `llama_cpp`).

Code written against llama-cpp-python's low-level module runs with Python types instead of
ctypes: handles are objects, token lists are Python lists, logits and embeddings are NumPy
arrays, text goes in and comes out as bytes (str is accepted as input too).

Handles. A model, context, vocabulary, batch, extended batch or sampler is an opaque object. After
`llama_model_free`, `llama_free`, `llama_batch_free`, `llama_batch_ext_free` or `llama_sampler_free`
using it raises ValueError (freeing twice too); None or a handle of the wrong kind raises TypeError. What C
reports as a NULL result raises instead: `ModelLoadError`/`FileNotFoundError` for models and
adapters, ValueError for contexts, `GrammarError` for grammars. Memory is released once no
handle uses it: a vocabulary, or a context, keeps its model's weights alive after
`llama_model_free`. A sampler chain attached with `llama_set_sampler` is kept alive by the context
and cannot be freed until it is detached or the context freed. `llama_get_memory(ctx)` returns the context itself: the `llama_memory_*`
functions take either. `llama_sampler_init` makes a sampler from a ctypes `llama_sampler_i` of Python
callbacks, kept alive by its handle (see there for clone, copy and callbacks that raise).

Out-buffers. Where C fills a caller's buffer (`llama_tokenize`, `llama_token_to_piece`,
`llama_detokenize`, `llama_chat_apply_template`, `llama_model_desc`, `llama_state_get_data`,
...), pass a writable buffer and its length: a list (filled in place from index 0, grown if
shorter) or int32 array for tokens; a bytearray, `ctypes.create_string_buffer` or uint8 array for
text. The call fills it and returns what C returns, including a negative count when the buffer
is too small. Pass None instead and the result itself comes back: a list of token ids, or bytes.

Validation. Nothing here reaches a llama.cpp abort: token ids, sequence ids, batch sizes,
output indices and grammars are checked first and raise ValueError, IndexError or GrammarError.
`llama_decode` returns 0, or 1 when no KV slot is free and 2 when aborted, as in C; invalid
batches raise ValueError and other failures `DecodeError`.
"""

from __future__ import annotations

import builtins
import ctypes
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from allama import _native
from allama.errors import DecodeAbortedError, KVCacheFullError

_log = logging.getLogger("allama.llama_cpp")

# --- constants (llama.h / ggml.h of the vendored llama.cpp) ---

LLAMA_DEFAULT_SEED = 0xFFFFFFFF
LLAMA_TOKEN_NULL = -1
LLAMA_MAX_DEVICES = _native.max_devices()
LLAMA_MAX_PARALLEL_SEQUENCES = _native.max_parallel_sequences()

LLAMA_VOCAB_TYPE_NONE = 0
LLAMA_VOCAB_TYPE_SPM = 1
LLAMA_VOCAB_TYPE_BPE = 2
LLAMA_VOCAB_TYPE_WPM = 3
LLAMA_VOCAB_TYPE_UGM = 4
LLAMA_VOCAB_TYPE_RWKV = 5
LLAMA_VOCAB_TYPE_PLAMO2 = 6

GGML_ROPE_TYPE_NEOX = 2
GGML_ROPE_TYPE_MROPE = 8
GGML_ROPE_TYPE_VISION = 24
GGML_ROPE_TYPE_IMROPE = 40
LLAMA_ROPE_TYPE_NONE = -1
LLAMA_ROPE_TYPE_NORM = 0
LLAMA_ROPE_TYPE_NEOX = GGML_ROPE_TYPE_NEOX
LLAMA_ROPE_TYPE_MROPE = GGML_ROPE_TYPE_MROPE
LLAMA_ROPE_TYPE_IMROPE = GGML_ROPE_TYPE_IMROPE
LLAMA_ROPE_TYPE_VISION = GGML_ROPE_TYPE_VISION

LLAMA_TOKEN_TYPE_UNDEFINED = 0
LLAMA_TOKEN_TYPE_NORMAL = 1
LLAMA_TOKEN_TYPE_UNKNOWN = 2
LLAMA_TOKEN_TYPE_CONTROL = 3
LLAMA_TOKEN_TYPE_USER_DEFINED = 4
LLAMA_TOKEN_TYPE_UNUSED = 5
LLAMA_TOKEN_TYPE_BYTE = 6

LLAMA_TOKEN_ATTR_UNDEFINED = 0
LLAMA_TOKEN_ATTR_UNKNOWN = 1 << 0
LLAMA_TOKEN_ATTR_UNUSED = 1 << 1
LLAMA_TOKEN_ATTR_NORMAL = 1 << 2
LLAMA_TOKEN_ATTR_CONTROL = 1 << 3
LLAMA_TOKEN_ATTR_USER_DEFINED = 1 << 4
LLAMA_TOKEN_ATTR_BYTE = 1 << 5
LLAMA_TOKEN_ATTR_NORMALIZED = 1 << 6
LLAMA_TOKEN_ATTR_LSTRIP = 1 << 7
LLAMA_TOKEN_ATTR_RSTRIP = 1 << 8
LLAMA_TOKEN_ATTR_SINGLE_WORD = 1 << 9

LLAMA_FTYPE_ALL_F32 = 0
LLAMA_FTYPE_MOSTLY_F16 = 1
LLAMA_FTYPE_MOSTLY_Q4_0 = 2
LLAMA_FTYPE_MOSTLY_Q4_1 = 3
LLAMA_FTYPE_MOSTLY_Q8_0 = 7
LLAMA_FTYPE_MOSTLY_Q5_0 = 8
LLAMA_FTYPE_MOSTLY_Q5_1 = 9
LLAMA_FTYPE_MOSTLY_Q4_K_M = 15
LLAMA_FTYPE_MOSTLY_Q5_K_M = 17
LLAMA_FTYPE_MOSTLY_Q6_K = 18
LLAMA_FTYPE_MOSTLY_BF16 = 32
LLAMA_FTYPE_GUESSED = 1024

LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED = -1
LLAMA_ROPE_SCALING_TYPE_NONE = 0
LLAMA_ROPE_SCALING_TYPE_LINEAR = 1
LLAMA_ROPE_SCALING_TYPE_YARN = 2
LLAMA_ROPE_SCALING_TYPE_LONGROPE = 3
LLAMA_ROPE_SCALING_TYPE_MAX_VALUE = LLAMA_ROPE_SCALING_TYPE_LONGROPE

LLAMA_POOLING_TYPE_UNSPECIFIED = -1
LLAMA_POOLING_TYPE_NONE = 0
LLAMA_POOLING_TYPE_MEAN = 1
LLAMA_POOLING_TYPE_CLS = 2
LLAMA_POOLING_TYPE_LAST = 3
LLAMA_POOLING_TYPE_RANK = 4

LLAMA_ATTENTION_TYPE_UNSPECIFIED = -1
LLAMA_ATTENTION_TYPE_CAUSAL = 0
LLAMA_ATTENTION_TYPE_NON_CAUSAL = 1

LLAMA_FLASH_ATTN_TYPE_AUTO = -1
LLAMA_FLASH_ATTN_TYPE_DISABLED = 0
LLAMA_FLASH_ATTN_TYPE_ENABLED = 1

LLAMA_SPLIT_MODE_NONE = 0
LLAMA_SPLIT_MODE_LAYER = 1
LLAMA_SPLIT_MODE_ROW = 2
LLAMA_SPLIT_MODE_TENSOR = 3

# The ggml types a KV cache (type_k, type_v) is usually set to.
GGML_TYPE_F32 = 0
GGML_TYPE_F16 = 1
GGML_TYPE_Q4_0 = 2
GGML_TYPE_Q4_1 = 3
GGML_TYPE_Q5_0 = 6
GGML_TYPE_Q5_1 = 7
GGML_TYPE_Q8_0 = 8
GGML_TYPE_IQ4_NL = 20
GGML_TYPE_BF16 = 30
# ... and the rest of ggml.h's enum ggml_type (4 and 5 were removed, 31-38 are gone too).
GGML_TYPE_Q8_1 = 9
GGML_TYPE_Q2_K = 10
GGML_TYPE_Q3_K = 11
GGML_TYPE_Q4_K = 12
GGML_TYPE_Q5_K = 13
GGML_TYPE_Q6_K = 14
GGML_TYPE_Q8_K = 15
GGML_TYPE_IQ2_XXS = 16
GGML_TYPE_IQ2_XS = 17
GGML_TYPE_IQ3_XXS = 18
GGML_TYPE_IQ1_S = 19
GGML_TYPE_IQ3_S = 21
GGML_TYPE_IQ2_S = 22
GGML_TYPE_IQ4_XS = 23
GGML_TYPE_I8 = 24
GGML_TYPE_I16 = 25
GGML_TYPE_I32 = 26
GGML_TYPE_I64 = 27
GGML_TYPE_F64 = 28
GGML_TYPE_IQ1_M = 29
GGML_TYPE_MXFP4 = 39
GGML_TYPE_NVFP4 = 40
GGML_TYPE_Q1_0 = 41
GGML_TYPE_Q2_0 = 42
GGML_TYPE_COUNT = 43

# File magics and versions of llama.cpp's session and sequence-state files.
LLAMA_FILE_MAGIC_GGLA = 0x67676C61  # 'ggla'
LLAMA_FILE_MAGIC_GGSN = 0x6767736E  # 'ggsn'
LLAMA_FILE_MAGIC_GGSQ = 0x67677371  # 'ggsq'
LLAMA_SESSION_MAGIC = LLAMA_FILE_MAGIC_GGSN
LLAMA_SESSION_VERSION = 10
LLAMA_STATE_SEQ_MAGIC = LLAMA_FILE_MAGIC_GGSQ
LLAMA_STATE_SEQ_VERSION = 3

# llama_state_seq_flags for the llama_state_seq_*_ext functions.
LLAMA_STATE_SEQ_FLAGS_NONE = 0
LLAMA_STATE_SEQ_FLAGS_SWA_ONLY = 1  # the old name of PARTIAL_ONLY
LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY = 1
LLAMA_STATE_SEQ_FLAGS_ON_DEVICE = 2

LLAMA_FTYPE_MOSTLY_Q2_K = 10
LLAMA_FTYPE_MOSTLY_Q3_K_S = 11
LLAMA_FTYPE_MOSTLY_Q3_K_M = 12
LLAMA_FTYPE_MOSTLY_Q3_K_L = 13
LLAMA_FTYPE_MOSTLY_Q4_K_S = 14
LLAMA_FTYPE_MOSTLY_Q5_K_S = 16
LLAMA_FTYPE_MOSTLY_IQ2_XXS = 19
LLAMA_FTYPE_MOSTLY_IQ2_XS = 20
LLAMA_FTYPE_MOSTLY_Q2_K_S = 21
LLAMA_FTYPE_MOSTLY_IQ3_XS = 22
LLAMA_FTYPE_MOSTLY_IQ3_XXS = 23
LLAMA_FTYPE_MOSTLY_IQ1_S = 24
LLAMA_FTYPE_MOSTLY_IQ4_NL = 25
LLAMA_FTYPE_MOSTLY_IQ3_S = 26
LLAMA_FTYPE_MOSTLY_IQ3_M = 27
LLAMA_FTYPE_MOSTLY_IQ2_S = 28
LLAMA_FTYPE_MOSTLY_IQ2_M = 29
LLAMA_FTYPE_MOSTLY_IQ4_XS = 30
LLAMA_FTYPE_MOSTLY_IQ1_M = 31
LLAMA_FTYPE_MOSTLY_TQ1_0 = 36
LLAMA_FTYPE_MOSTLY_TQ2_0 = 37
LLAMA_FTYPE_MOSTLY_MXFP4_MOE = 38
LLAMA_FTYPE_MOSTLY_NVFP4 = 39
LLAMA_FTYPE_MOSTLY_Q1_0 = 40
LLAMA_FTYPE_MOSTLY_Q2_0 = 41

LLAMA_VOCAB_TYPE_TEST = 7

# llama-vocab.h's pre-tokenizer types (llama_vocab_pre_type).
LLAMA_VOCAB_PRE_TYPE_DEFAULT = 0
LLAMA_VOCAB_PRE_TYPE_LLAMA3 = 1
LLAMA_VOCAB_PRE_TYPE_DEEPSEEK_LLM = 2
LLAMA_VOCAB_PRE_TYPE_DEEPSEEK_CODER = 3
LLAMA_VOCAB_PRE_TYPE_FALCON = 4
LLAMA_VOCAB_PRE_TYPE_MPT = 5
LLAMA_VOCAB_PRE_TYPE_STARCODER = 6
LLAMA_VOCAB_PRE_TYPE_GPT2 = 7
LLAMA_VOCAB_PRE_TYPE_REFACT = 8
LLAMA_VOCAB_PRE_TYPE_COMMAND_R = 9
LLAMA_VOCAB_PRE_TYPE_STABLELM2 = 10
LLAMA_VOCAB_PRE_TYPE_QWEN2 = 11
LLAMA_VOCAB_PRE_TYPE_OLMO = 12
LLAMA_VOCAB_PRE_TYPE_DBRX = 13
LLAMA_VOCAB_PRE_TYPE_SMAUG = 14
LLAMA_VOCAB_PRE_TYPE_PORO = 15
LLAMA_VOCAB_PRE_TYPE_CHATGLM3 = 16
LLAMA_VOCAB_PRE_TYPE_CHATGLM4 = 17
LLAMA_VOCAB_PRE_TYPE_VIKING = 18
LLAMA_VOCAB_PRE_TYPE_JAIS = 19
LLAMA_VOCAB_PRE_TYPE_TEKKEN = 20
LLAMA_VOCAB_PRE_TYPE_SMOLLM = 21
LLAMA_VOCAB_PRE_TYPE_CODESHELL = 22
LLAMA_VOCAB_PRE_TYPE_BLOOM = 23
LLAMA_VOCAB_PRE_TYPE_GPT3_FINNISH = 24
LLAMA_VOCAB_PRE_TYPE_EXAONE = 25
LLAMA_VOCAB_PRE_TYPE_CHAMELEON = 26
LLAMA_VOCAB_PRE_TYPE_MINERVA = 27
LLAMA_VOCAB_PRE_TYPE_DEEPSEEK3_LLM = 28
LLAMA_VOCAB_PRE_TYPE_GPT4O = 29
LLAMA_VOCAB_PRE_TYPE_SUPERBPE = 30
LLAMA_VOCAB_PRE_TYPE_TRILLION = 31
LLAMA_VOCAB_PRE_TYPE_BAILINGMOE = 32
LLAMA_VOCAB_PRE_TYPE_LLAMA4 = 33
LLAMA_VOCAB_PRE_TYPE_PIXTRAL = 34
LLAMA_VOCAB_PRE_TYPE_SEED_CODER = 35

LLAMA_LOAD_MODE_AUTO = -1
LLAMA_LOAD_MODE_NONE = 0
LLAMA_LOAD_MODE_MMAP = 1
LLAMA_LOAD_MODE_MLOCK = 2
LLAMA_LOAD_MODE_MMAP_MLOCK = 3
LLAMA_LOAD_MODE_DIRECT_IO = 4

LLAMA_LAZY_MODE_OFF = 0
LLAMA_LAZY_MODE_AUTO = 1
LLAMA_LAZY_MODE_ON = 2

LLAMA_CONTEXT_TYPE_DEFAULT = 0
LLAMA_CONTEXT_TYPE_MTP = 1

LLAMA_KV_OVERRIDE_TYPE_INT = 0
LLAMA_KV_OVERRIDE_TYPE_FLOAT = 1
LLAMA_KV_OVERRIDE_TYPE_BOOL = 2
LLAMA_KV_OVERRIDE_TYPE_STR = 3

# enum llama_model_meta_key: GGUF keys with a model's recommended sampling (llama_model_meta_key_str).
LLAMA_MODEL_META_KEY_SAMPLING_SEQUENCE = 0
LLAMA_MODEL_META_KEY_SAMPLING_TOP_K = 1
LLAMA_MODEL_META_KEY_SAMPLING_TOP_P = 2
LLAMA_MODEL_META_KEY_SAMPLING_MIN_P = 3
LLAMA_MODEL_META_KEY_SAMPLING_XTC_PROBABILITY = 4
LLAMA_MODEL_META_KEY_SAMPLING_XTC_THRESHOLD = 5
LLAMA_MODEL_META_KEY_SAMPLING_TEMP = 6
LLAMA_MODEL_META_KEY_SAMPLING_PENALTY_LAST_N = 7
LLAMA_MODEL_META_KEY_SAMPLING_PENALTY_REPEAT = 8
LLAMA_MODEL_META_KEY_SAMPLING_MIROSTAT = 9
LLAMA_MODEL_META_KEY_SAMPLING_MIROSTAT_TAU = 10
LLAMA_MODEL_META_KEY_SAMPLING_MIROSTAT_ETA = 11

LLAMA_PROCESS_TYPE_ENCODE = 0
LLAMA_PROCESS_TYPE_DECODE = 1

GGML_NUMA_STRATEGY_DISABLED = 0
GGML_NUMA_STRATEGY_DISTRIBUTE = 1
GGML_NUMA_STRATEGY_ISOLATE = 2
GGML_NUMA_STRATEGY_NUMACTL = 3
GGML_NUMA_STRATEGY_MIRROR = 4
GGML_NUMA_STRATEGY_COUNT = 5

GGML_LOG_LEVEL_NONE = 0
GGML_LOG_LEVEL_DEBUG = 1
GGML_LOG_LEVEL_INFO = 2
GGML_LOG_LEVEL_WARN = 3
GGML_LOG_LEVEL_ERROR = 4
GGML_LOG_LEVEL_CONT = 5

# --- scalar and callback types (ctypes, as in C): `(llama_token * n)()` makes a token buffer ---

llama_token = ctypes.c_int32
llama_pos = ctypes.c_int32
llama_seq_id = ctypes.c_int32
llama_token_p = ctypes.POINTER(llama_token)
llama_state_seq_flags = ctypes.c_uint32
llama_sampler_context_t = ctypes.c_void_p

# typedef bool (*ggml_abort_callback)(void * data): llama_set_abort_callback takes it or any callable.
ggml_abort_callback = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p)
ggml_backend_sched_eval_callback = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_bool, ctypes.c_void_p)
llama_progress_callback = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_float, ctypes.c_void_p)
llama_model_set_tensor_data_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
llama_opt_param_filter = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_void_p)


# --- structs callers build (ctypes, laid out as in llama.h) ---


class llama_token_data(ctypes.Structure):
    """One candidate: token id, logit, probability."""

    _fields_ = [("id", llama_token), ("logit", ctypes.c_float), ("p", ctypes.c_float)]


llama_token_data_p = ctypes.POINTER(llama_token_data)


class llama_token_data_array(ctypes.Structure):
    """Candidates for llama_sampler_apply: `data` points at `size` llama_token_data; `selected` is an
    index into data (-1: none). A NumPy record array viewing the data works as in llama-cpp-python."""

    _fields_ = [("data", llama_token_data_p), ("size", ctypes.c_size_t), ("selected", ctypes.c_int64),
                ("sorted", ctypes.c_bool)]


llama_token_data_array_p = ctypes.POINTER(llama_token_data_array)


class llama_model_kv_override_value(ctypes.Union):
    _fields_ = [("val_i64", ctypes.c_int64), ("val_f64", ctypes.c_double), ("val_bool", ctypes.c_bool),
                ("val_str", ctypes.c_char * 128)]


class llama_model_kv_override(ctypes.Structure):
    """A metadata override (tag LLAMA_KV_OVERRIDE_TYPE_*); set an array of them, ended by an empty key,
    as llama_model_params.kv_overrides."""

    _fields_ = [("tag", ctypes.c_int), ("key", ctypes.c_char * 128), ("value", llama_model_kv_override_value)]


class llama_model_tensor_override(ctypes.Structure):
    _fields_ = [("pattern", ctypes.c_char_p), ("type", ctypes.c_int)]


class llama_model_imatrix_data(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("data", ctypes.POINTER(ctypes.c_float)), ("size", ctypes.c_size_t)]


class llama_model_quantize_params(ctypes.Structure):
    """llama_model_quantize's options as a C struct; llama_model_quantize also takes the object
    llama_model_quantize_default_params returns. imatrix, kv_overrides, tt_overrides, prune_layers
    and dry_run are not supported by allama's quantizer and must stay unset."""

    _fields_ = [
        ("nthread", ctypes.c_int32), ("ftype", ctypes.c_int), ("output_tensor_type", ctypes.c_int),
        ("token_embedding_type", ctypes.c_int), ("allow_requantize", ctypes.c_bool),
        ("quantize_output_tensor", ctypes.c_bool), ("only_copy", ctypes.c_bool), ("pure", ctypes.c_bool),
        ("keep_split", ctypes.c_bool), ("dry_run", ctypes.c_bool),
        ("imatrix", ctypes.POINTER(llama_model_imatrix_data)),
        ("kv_overrides", ctypes.POINTER(llama_model_kv_override)),
        ("tt_overrides", ctypes.POINTER(llama_model_tensor_override)),
        ("prune_layers", ctypes.POINTER(ctypes.c_int32)), ("max_buf_size", ctypes.c_size_t),
    ]


class llama_sampler_seq_config(ctypes.Structure):
    _fields_ = [("seq_id", llama_seq_id), ("sampler", ctypes.c_void_p)]


class llama_embd(ctypes.Structure):
    """Embedding rows for the extended batch API: `n_rows` rows of `n_embd` floats at `data`."""

    _fields_ = [("data", ctypes.POINTER(ctypes.c_float)), ("n_rows", ctypes.c_size_t), ("n_embd", ctypes.c_size_t)]


class llama_sampler_data(ctypes.Structure):
    _fields_ = [("logits", ctypes.c_void_p), ("probs", ctypes.c_void_p), ("sampled", ctypes.c_void_p),
                ("candidates", ctypes.c_void_p)]


class llama_opt_params(ctypes.Structure):
    _fields_ = [("n_ctx_train", ctypes.c_uint32), ("param_filter", llama_opt_param_filter),
                ("param_filter_ud", ctypes.c_void_p), ("get_opt_pars", ctypes.c_void_p),
                ("get_opt_pars_ud", ctypes.c_void_p)]


# The custom-sampler interface of llama.h (struct llama_sampler_i and its function pointer types).
llama_sampler_i_name = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_void_p)
llama_sampler_i_accept = ctypes.CFUNCTYPE(None, ctypes.c_void_p, llama_token)
llama_sampler_i_apply = ctypes.CFUNCTYPE(None, ctypes.c_void_p, llama_token_data_array_p)
llama_sampler_i_reset = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
llama_sampler_i_clone = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)
llama_sampler_i_free = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
llama_sampler_i_backend_init = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32)
llama_sampler_i_backend_accept = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                                  ctypes.c_void_p)
llama_sampler_i_backend_apply = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                                 ctypes.POINTER(llama_sampler_data))
llama_sampler_i_backend_set_input = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
llama_sampler_i_backend_reset = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
llama_sampler_i_copy_state = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class llama_sampler_i(ctypes.Structure):
    _fields_ = [("name", llama_sampler_i_name), ("accept", llama_sampler_i_accept), ("apply", llama_sampler_i_apply),
                ("reset", llama_sampler_i_reset), ("clone", llama_sampler_i_clone), ("free", llama_sampler_i_free),
                ("backend_init", llama_sampler_i_backend_init), ("backend_accept", llama_sampler_i_backend_accept),
                ("backend_apply", llama_sampler_i_backend_apply),
                ("backend_set_input", llama_sampler_i_backend_set_input),
                ("backend_reset", llama_sampler_i_backend_reset), ("copy_state", llama_sampler_i_copy_state)]


class llama_sampler(ctypes.Structure):
    """llama.h's struct llama_sampler (for custom samplers); allama's sampler handles are llama_sampler_p."""

    _fields_ = [("iface", ctypes.POINTER(llama_sampler_i)), ("ctx", llama_sampler_context_t)]


# --- handle types ---

llama_model_p = _native.Model
llama_context_p = _native.Context
llama_vocab_p = _native.Vocab
llama_sampler_p = _native.Sampler
llama_batch_ext_p = _native.BatchExt
llama_adapter_lora_p = _native.LoraAdapter
llama_context_params = _native.ContextParams
llama_memory_t = _native.Context
llama_kv_cache_p = _native.Context  # llama.cpp's old name for the memory handle
llama_logit_bias_p = Sequence  # a list of llama_logit_bias (or (token, bias) pairs)


class llama_logit_bias(NamedTuple):
    """One entry of llama_sampler_init_logit_bias's list."""

    token: int
    bias: float


class llama_chat_message(NamedTuple):
    """One message for llama_chat_apply_template (dicts and (role, content) pairs work too)."""

    role: bytes | str
    content: bytes | str


@dataclass
class llama_sampler_chain_params:
    """llama_sampler_chain_init's options; llama.cpp measures no timings by default."""

    no_perf: bool = True


@dataclass
class llama_perf_context_data:
    """llama.cpp's context counters (llama_perf_context)."""

    t_start_ms: float
    t_load_ms: float
    t_p_eval_ms: float
    t_eval_ms: float
    n_p_eval: int
    n_eval: int
    n_reused: int


@dataclass
class llama_perf_sampler_data:
    """A sampler chain's counters (llama_perf_sampler)."""

    t_sample_ms: float
    n_sample: int


def _kv_override_value(entry: llama_model_kv_override) -> bool | int | float | str:
    tag = entry.tag
    if tag == LLAMA_KV_OVERRIDE_TYPE_INT:
        return int(entry.value.val_i64)
    if tag == LLAMA_KV_OVERRIDE_TYPE_FLOAT:
        return float(entry.value.val_f64)
    if tag == LLAMA_KV_OVERRIDE_TYPE_BOOL:
        return bool(entry.value.val_bool)
    if tag == LLAMA_KV_OVERRIDE_TYPE_STR:
        return entry.value.val_str.decode("utf-8")
    raise ValueError(f"kv override {entry.key!r} has an unknown tag {tag} (LLAMA_KV_OVERRIDE_TYPE_*)")


def _kv_overrides(value: Any) -> dict[str, bool | int | float | str]:
    """A dict as allama takes it, from a dict or from llama_model_kv_override entries (an array or
    pointer ended by an entry with an empty key, as in C)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, llama_model_kv_override):
        value = [value]
    out: dict[str, bool | int | float | str] = {}
    entries = iter(value) if not isinstance(value, ctypes._Pointer) else (value[i] for i in range(1 << 16))
    for entry in entries:
        if not isinstance(entry, llama_model_kv_override):
            raise TypeError(f"kv_overrides entries must be llama_model_kv_override, got {type(entry).__name__}")
        if not entry.key:
            break
        out[entry.key.decode("utf-8")] = _kv_override_value(entry)
    else:
        if isinstance(value, ctypes._Pointer):
            raise ValueError("kv_overrides has no terminating entry with an empty key")
    return out


class llama_model_params(_native.ModelParams):
    """Model loading options; kv_overrides also takes an array of llama_model_kv_override ended
    by an empty key, as llama-cpp-python code sets it."""

    @property
    def kv_overrides(self) -> dict[str, bool | int | float | str]:
        return _native.ModelParams.kv_overrides.__get__(self)

    @kv_overrides.setter
    def kv_overrides(self, value: Any) -> None:
        _native.ModelParams.kv_overrides.__set__(self, _kv_overrides(value))


def _handle(value: Any, kind: type, what: str, source: str) -> Any:
    if not isinstance(value, kind):
        raise TypeError(f"expected a {what} handle (from {source}), got {type(value).__name__}")
    return value


def _model(model: Any) -> _native.Model:
    return _handle(model, _native.Model, "model", "llama_model_load_from_file")


def _context(ctx: Any) -> _native.Context:
    return _handle(ctx, _native.Context, "context", "llama_init_from_model")


def _vocab(vocab: Any) -> _native.Vocab:
    if isinstance(vocab, _native.Model):
        raise TypeError("expected a vocab handle: pass llama_model_get_vocab(model), not the model")
    return _handle(vocab, _native.Vocab, "vocab", "llama_model_get_vocab")


def _sampler(smpl: Any) -> _native.Sampler:
    return _handle(smpl, _native.Sampler, "sampler", "llama_sampler_init_* or llama_sampler_chain_init")


def _int(value: Any, name: str) -> int:
    try:
        return int(value.value if hasattr(value, "value") else value)  # ctypes scalars too
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def _bytes(text: Any, name: str) -> bytes:
    if isinstance(text, str):
        return text.encode("utf-8")
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    if text is None:
        raise TypeError(f"{name} must be bytes or str, not None")
    try:
        return bytes(memoryview(text))
    except TypeError:
        raise TypeError(f"{name} must be bytes or str, got {type(text).__name__}") from None


def _path(path: Any) -> str:
    if path is None:
        raise TypeError("the path must be bytes, str or os.PathLike, not None")
    return os.fsdecode(path)


# --- out-buffers ---


def _byte_view(buf: Any, length: int, name: str) -> np.ndarray:
    try:
        view = np.frombuffer(buf, dtype=np.uint8)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a writable byte buffer (bytearray, ctypes.create_string_buffer) "
                        "or None to get bytes back") from None
    if not view.flags.writeable:
        raise TypeError(f"{name} is read-only: pass a bytearray or ctypes.create_string_buffer, or None")
    if length < 0 or length > view.size:
        raise ValueError(f"the length {length} does not fit {name}, which holds {view.size} bytes")
    return view[:length]


def _write_bytes(buf: Any, length: Any, data: bytes, name: str, *, nul: bool = False) -> int:
    """Copies as much of `data` as `length` allows (plus a NUL when C writes one); returns len(data)."""
    view = _byte_view(buf, _int(length, "the buffer length"), name)
    n = min(len(data), max(view.size - 1, 0) if nul else view.size)
    view[:n] = np.frombuffer(data, dtype=np.uint8, count=n)
    if nul and n < view.size:
        view[n] = 0
    return len(data)


def _token_view(buf: Any, name: str) -> np.ndarray:
    view = buf if isinstance(buf, np.ndarray) else None
    if view is None:
        try:
            view = np.asarray(memoryview(buf))
        except TypeError:
            raise TypeError(f"{name} must be a list, an int32 array or None, got {type(buf).__name__}") from None
    if view.dtype != np.int32 or view.ndim != 1:
        raise TypeError(f"{name} must hold int32 token ids (got {view.dtype}, {view.ndim}-d)")
    if not view.flags.writeable:
        raise TypeError(f"{name} is read-only")
    return view


def _write_tokens(out: Any, capacity: int, tokens: Sequence[int], name: str) -> None:
    if isinstance(out, list):
        out[: len(tokens)] = tokens
        return
    view = _token_view(out, name)
    if capacity > view.size:
        raise ValueError(f"{name} holds {view.size} tokens, fewer than the {capacity} given as its size")
    view[: len(tokens)] = tokens


def _token_list(tokens: Any, n_tokens: Any, name: str = "tokens") -> list[int]:
    n = _int(n_tokens, f"the number of {name}")
    if tokens is None:
        raise TypeError(f"{name} must be a sequence of token ids, not None")
    seq = tokens if isinstance(tokens, (list, tuple, np.ndarray)) else list(tokens)
    if n < 0 or n > len(seq):
        raise ValueError(f"n = {n} is outside the {len(seq)} {name} given")
    return [int(t) for t in seq[:n]]


def _store_count(out: Any, n: int) -> None:
    """Writes a count through C's `size_t *` argument: a ctypes scalar, byref() of one, or a list."""
    if out is None:
        return
    target = getattr(out, "_obj", out)  # ctypes.byref(x)
    if isinstance(target, list):
        target[:1] = [n]
    elif isinstance(target, np.ndarray):
        target.reshape(-1)[0] = n
    elif hasattr(target, "value"):
        target.value = n
    else:
        raise TypeError("the count argument must be a ctypes integer, byref() of one, a list or None")


# --- backend and system ---


def llama_backend_init() -> None:
    """Nothing to do: importing allama initialises llama.cpp's backend."""


def llama_backend_free() -> None:
    """Nothing to do: the backend lives as long as the process (handles may still use it)."""


def llama_numa_init(numa: int) -> None:
    _native.numa_init(_int(numa, "numa"))


def llama_time_us() -> int:
    return _native.time_us()


def llama_max_devices() -> int:
    return _native.max_devices()


def llama_max_parallel_sequences() -> int:
    return _native.max_parallel_sequences()


def llama_supports_mmap() -> bool:
    return _native.supports_mmap()


def llama_supports_mlock() -> bool:
    return _native.supports_mlock()


def llama_supports_gpu_offload() -> bool:
    return _native.supports_gpu_offload()


def llama_supports_rpc() -> bool:
    return _native.supports_rpc()


def llama_print_system_info() -> bytes:
    return _native.system_info().encode()


def llama_version() -> bytes:
    return _native.llama_cpp_version().encode()


# --- parameters ---


def llama_model_default_params() -> _native.ModelParams:
    """llama.cpp's model defaults: as allama's ModelParams, but offloading all layers (n_gpu_layers=-1)."""
    params = llama_model_params()
    params.n_gpu_layers = -1
    return params


def llama_context_default_params() -> _native.ContextParams:
    """llama.cpp's context defaults (GGML_DEFAULT_N_THREADS threads, no_perf on)."""
    params = _native.ContextParams()
    params.n_threads = params.n_threads_batch = _native.GGML_DEFAULT_N_THREADS
    params.no_perf = True
    return params


def llama_model_quantize_default_params() -> _native.QuantizeParams:
    """llama.cpp's quantize defaults: Q8_0, every core, output tensor quantized."""
    return _native.QuantizeParams()


def _quantize_params(params: Any) -> _native.QuantizeParams:
    if isinstance(params, ctypes._Pointer):
        params = params.contents
    params = getattr(params, "_obj", params)  # ctypes.byref(params)
    if not isinstance(params, llama_model_quantize_params):
        return _handle(params, _native.QuantizeParams, "quantize params", "llama_model_quantize_default_params")
    for name in ("imatrix", "kv_overrides", "tt_overrides", "prune_layers"):
        if getattr(params, name):
            raise NotImplementedError(f"llama_model_quantize_params.{name} is not supported by allama's quantizer")
    if params.dry_run:
        raise NotImplementedError("llama_model_quantize_params.dry_run is not supported by allama's quantizer")
    native = _native.QuantizeParams()
    for name in ("nthread", "ftype", "output_tensor_type", "token_embedding_type", "allow_requantize",
                 "quantize_output_tensor", "only_copy", "pure", "keep_split"):
        setattr(native, name, getattr(params, name))
    for name in ("output_tensor_type", "token_embedding_type"):  # C's GGML_TYPE_COUNT: llama.cpp's choice
        if getattr(params, name) == GGML_TYPE_COUNT:
            setattr(native, name, -1)
    return native


def llama_model_quantize(fname_inp: bytes | str | os.PathLike[str], fname_out: bytes | str | os.PathLike[str],
                         params: _native.QuantizeParams) -> int:
    """Quantize a GGUF file; 0 on success, llama.cpp's non-zero status (its reason logged) otherwise.
    Missing or non-GGUF inputs raise as they do for loading (C would log and return 1)."""
    params = _quantize_params(params)
    status, reason = _native.quantize(_path(fname_inp), _path(fname_out), params)
    if status != 0:
        _log.error("llama_model_quantize: %s", reason)
    return int(status)


def llama_sampler_chain_default_params() -> llama_sampler_chain_params:
    return llama_sampler_chain_params()


# --- models ---


def llama_model_load_from_file(path_model: bytes | str | os.PathLike[str],
                               params: _native.ModelParams) -> _native.Model:
    """Load a GGUF model; raises FileNotFoundError or ModelLoadError where C returns NULL."""
    return _native.Model.load(_path(path_model), _handle(params, _native.ModelParams, "model params",
                                                         "llama_model_default_params"))


def llama_model_load_from_splits(paths: Sequence[bytes | str], n_paths: int,
                                 params: _native.ModelParams) -> _native.Model:
    n = _int(n_paths, "n_paths")
    if n < 1 or n > len(paths):
        raise ValueError(f"n_paths = {n} is outside the {len(paths)} paths given")
    return _native.Model.load([_path(p) for p in paths[:n]],
                              _handle(params, _native.ModelParams, "model params", "llama_model_default_params"))


def llama_model_free(model: _native.Model) -> None:
    """Release the model handle; contexts and vocabs made from it keep working."""
    if _model(model).closed:
        raise ValueError("the model was already freed")
    model.close()


def llama_model_get_vocab(model: _native.Model) -> _native.Vocab:
    return _native.Vocab(_model(model))


def llama_model_n_ctx_train(model: _native.Model) -> int:
    return _model(model).n_ctx_train


def llama_model_n_embd(model: _native.Model) -> int:
    return _model(model).n_embd


def llama_model_n_embd_inp(model: _native.Model) -> int:
    return _model(model).n_embd_inp


def llama_model_n_embd_out(model: _native.Model) -> int:
    return _model(model).n_embd_out


def llama_model_n_layer(model: _native.Model) -> int:
    return _model(model).n_layer


def llama_model_n_head(model: _native.Model) -> int:
    return _model(model).n_head


def llama_model_n_head_kv(model: _native.Model) -> int:
    return _model(model).n_head_kv


def llama_model_n_swa(model: _native.Model) -> int:
    return _model(model).n_swa


def llama_model_n_cls_out(model: _native.Model) -> int:
    return _model(model).n_cls_out


def llama_model_cls_label(model: _native.Model, i: int) -> bytes | None:
    label = _model(model).cls_label(_int(i, "i"))
    return None if label is None else label.encode()


def llama_model_rope_type(model: _native.Model) -> int:
    return _model(model).rope_type


def llama_model_rope_freq_scale_train(model: _native.Model) -> float:
    return _model(model).rope_freq_scale_train


def llama_model_ftype(model: _native.Model) -> int:
    return _model(model).ftype


def llama_model_size(model: _native.Model) -> int:
    return _model(model).size


def llama_model_n_params(model: _native.Model) -> int:
    return _model(model).n_params


def llama_model_has_encoder(model: _native.Model) -> bool:
    return _model(model).has_encoder


def llama_model_has_decoder(model: _native.Model) -> bool:
    return _model(model).has_decoder


def llama_model_decoder_start_token(model: _native.Model) -> int:
    return _model(model).decoder_start_token


def llama_model_is_recurrent(model: _native.Model) -> bool:
    return _model(model).is_recurrent


def llama_model_is_hybrid(model: _native.Model) -> bool:
    return _model(model).is_hybrid


def llama_model_is_diffusion(model: _native.Model) -> bool:
    return _model(model).is_diffusion


def llama_model_chat_template(model: _native.Model, name: bytes | str | None) -> bytes | None:
    """The model's default chat template (name None) or a named one; None when absent."""
    template = _model(model).chat_template(None if name is None else _bytes(name, "name").decode())
    return None if template is None else template.encode()


def llama_model_desc(model: _native.Model, buf: Any, buf_size: int) -> int | bytes:
    """A one-line description ('llama 7B Q4_0'); out-buffer rule, NUL-terminated as snprintf."""
    desc = _model(model).description.encode()
    return desc if buf is None else _write_bytes(buf, buf_size, desc, "buf", nul=True)


def llama_model_meta_val_str(model: _native.Model, key: bytes | str, buf: Any, buf_size: int) -> int | bytes | None:
    """A metadata value as text; -1 (None with buf None) when the key is absent."""
    return _meta_value(_model(model).metadata, key, buf, buf_size)


def llama_model_meta_count(model: _native.Model) -> int:
    return _model(model).meta_count


def _meta_value(metadata: Mapping[str, str], key: bytes | str, buf: Any, buf_size: int) -> int | bytes | None:
    """A metadata value by key (out-buffer rule); -1 (None with buf None) when it is absent."""
    value = metadata.get(_bytes(key, "key").decode())
    if value is None:
        return None if buf is None else -1
    data = value.encode()
    return data if buf is None else _write_bytes(buf, buf_size, data, "buf", nul=True)


def _meta_out(value: bytes | None, buf: Any, buf_size: Any) -> int | bytes | None:
    if value is None:  # index out of range: C writes an empty string and returns -1
        if buf is not None and _int(buf_size, "buf_size") > 0:
            _write_bytes(buf, buf_size, b"", "buf", nul=True)
        return None if buf is None else -1
    return value if buf is None else _write_bytes(buf, buf_size, value, "buf", nul=True)


def llama_model_meta_key_by_index(model: _native.Model, i: int, buf: Any, buf_size: int) -> int | bytes | None:
    """The i-th metadata key (out-buffer rule, NUL-terminated); -1 (None with buf None) when i is out of range."""
    return _meta_out(_model(model).meta_key_by_index(_int(i, "i")), buf, buf_size)


def llama_model_meta_val_str_by_index(model: _native.Model, i: int, buf: Any, buf_size: int) -> int | bytes | None:
    """The i-th metadata value as text; -1 (None with buf None) when i is out of range."""
    return _meta_out(_model(model).meta_val_by_index(_int(i, "i")), buf, buf_size)


def llama_model_meta_key_str(key: int) -> bytes | None:
    """The GGUF key of a LLAMA_MODEL_META_KEY_* value; None (C's NULL) for an unknown one."""
    name = _native.meta_key_str(_int(key, "key"))
    return None if name is None else name.encode()


def llama_model_n_layer_nextn(model: _native.Model) -> int:
    return _model(model).n_layer_nextn


def llama_model_save_to_file(model: _native.Model, path_model: bytes | str | os.PathLike[str]) -> None:
    """Write the loaded model as a GGUF file (OSError when the path cannot be written)."""
    _model(model).save(_path(path_model))


def llama_ftype_name(ftype: int) -> bytes:
    return _native.ftype_name(_int(ftype, "ftype")).encode()


def llama_flash_attn_type_name(flash_attn_type: int) -> bytes:
    """'auto', 'disabled' or 'enabled'; ValueError for other values (C aborts)."""
    return _native.flash_attn_type_name(_int(flash_attn_type, "flash_attn_type")).encode()


def llama_load_mode_name(load_mode: int) -> bytes:
    """A LLAMA_LOAD_MODE_* value's name; ValueError for other values (C aborts)."""
    return _native.load_mode_name(_int(load_mode, "load_mode")).encode()


def llama_load_mode_from_str(str: bytes | builtins.str) -> int:  # noqa: A002
    """The LLAMA_LOAD_MODE_* named 'auto', 'none', 'mmap', 'mlock', 'mmap+mlock' or 'dio'; ValueError otherwise."""
    return _native.load_mode_from_str(_bytes(str, "str").decode("utf-8", "replace"))


def llama_max_tensor_buft_overrides() -> int:
    return _native.max_tensor_buft_overrides()


def llama_split_path(split_path: Any, maxlen: int, path_prefix: bytes | str, split_no: int,
                     split_count: int) -> int | bytes:
    """'<prefix>-%05d-of-%05d.gguf' for split_no (0-based): its length written into split_path
    (0 when it does not fit maxlen), or the bytes when split_path is None."""
    path = _native.split_path(_bytes(path_prefix, "path_prefix").decode("utf-8", "surrogateescape"),
                              _int(split_no, "split_no"), _int(split_count, "split_count")).encode("utf-8", "surrogateescape")
    if split_path is None:
        return path
    if len(path) >= _int(maxlen, "maxlen"):
        return 0
    return _write_bytes(split_path, maxlen, path, "split_path", nul=True)


def llama_split_prefix(split_prefix: Any, maxlen: int, split_path: bytes | str, split_no: int,
                       split_count: int) -> int | bytes:
    """The path without its '-%05d-of-%05d.gguf' suffix: its length (as much as fits copied into
    split_prefix), 0 when the suffix does not match; or the bytes when split_prefix is None."""
    prefix = _native.split_prefix(_bytes(split_path, "split_path").decode("utf-8", "surrogateescape"),
                                  _int(split_no, "split_no"), _int(split_count, "split_count")).encode("utf-8", "surrogateescape")
    if split_prefix is None:
        return prefix
    if prefix:
        _write_bytes(split_prefix, maxlen, prefix, "split_prefix", nul=True)
    return len(prefix)


# --- contexts ---


def llama_init_from_model(model: _native.Model, params: _native.ContextParams) -> _native.Context:
    """A context over the model; raises ValueError where C returns NULL."""
    return _native.Context(_model(model), _handle(params, _native.ContextParams, "context params",
                                                  "llama_context_default_params"))


def llama_free(ctx: _native.Context) -> None:
    if _context(ctx).closed:
        raise ValueError("the context was already freed")
    ctx.close()


def llama_get_model(ctx: _native.Context) -> _native.Model:
    return _context(ctx).model


def llama_get_memory(ctx: _native.Context) -> _native.Context:
    """The context's memory handle, which is the context itself here."""
    if _context(ctx).closed:
        raise ValueError("the context was freed")
    return ctx


def llama_n_ctx(ctx: _native.Context) -> int:
    return _context(ctx).n_ctx


def llama_n_ctx_seq(ctx: _native.Context) -> int:
    return _context(ctx).n_ctx_seq


def llama_n_batch(ctx: _native.Context) -> int:
    return _context(ctx).n_batch


def llama_n_ubatch(ctx: _native.Context) -> int:
    return _context(ctx).n_ubatch


def llama_n_seq_max(ctx: _native.Context) -> int:
    return _context(ctx).n_seq_max


def llama_pooling_type(ctx: _native.Context) -> int:
    return _context(ctx).pooling_type


def llama_set_n_threads(ctx: _native.Context, n_threads: int, n_threads_batch: int) -> None:
    _context(ctx).set_threads(_int(n_threads, "n_threads"), _int(n_threads_batch, "n_threads_batch"))


def llama_n_threads(ctx: _native.Context) -> int:
    return _context(ctx).n_threads


def llama_n_threads_batch(ctx: _native.Context) -> int:
    return _context(ctx).n_threads_batch


def llama_set_embeddings(ctx: _native.Context, embeddings: bool) -> None:
    _context(ctx).set_embeddings(bool(embeddings))


def llama_set_causal_attn(ctx: _native.Context, causal_attn: bool) -> None:
    _context(ctx).set_causal_attn(bool(causal_attn))


def llama_get_causal_attn(ctx: _native.Context) -> bool:
    return _context(ctx).causal_attn


def llama_set_warmup(ctx: _native.Context, warmup: bool) -> None:
    """Deprecated by llama.cpp: run every tensor in the following decodes (do warm-up runs instead)."""
    _context(ctx).set_warmup(bool(warmup))


def llama_n_rs_seq(ctx: _native.Context) -> int:
    return _context(ctx).n_rs_seq


def llama_set_abort_callback(ctx: _native.Context, abort_callback: Callable[[Any], Any] | None,
                             abort_callback_data: Any = None) -> None:
    """Call abort_callback(abort_callback_data) while llama.cpp computes a decode; a true result
    stops it and llama_decode returns 2. Any callable works, a ggml_abort_callback too; None removes
    it. The callback runs on the decoding thread with the GIL held, so it should be quick, and it
    must not use this context (that raises RuntimeError, reported as unraisable). An exception in it
    is reported the same way and does not abort."""
    _context(ctx).set_abort_callback(abort_callback, abort_callback_data)


def llama_synchronize(ctx: _native.Context) -> None:
    """Nothing to wait for: decode and the output getters synchronise themselves."""
    if _context(ctx).closed:
        raise ValueError("the context was freed")


# --- batches ---


class llama_batch:
    """llama.cpp's llama_batch: write entries into the NumPy arrays `token` (or `embd`), `pos`,
    `n_seq_id`, `seq_id` (rows of n_seq_max ids) and `logits`, and set `n_tokens`."""

    def __init__(self, n_tokens_alloc: int, embd: int, n_seq_max: int, *, _auto: bool = False) -> None:
        self.n_tokens = 0
        self._capacity = n_tokens_alloc
        self._embd_width = embd
        self._n_seq_max = n_seq_max
        self._auto = _auto  # from llama_batch_get_one: positions, sequence 0, last output
        self._freed = False
        self._native: _native.Batch | None = None
        self._token = np.zeros(n_tokens_alloc, np.int32) if embd == 0 else None
        self._embd = np.zeros(n_tokens_alloc * embd, np.float32) if embd > 0 else None
        self._pos = None if _auto else np.zeros(n_tokens_alloc, np.int32)
        self._n_seq_id = None if _auto else np.zeros(n_tokens_alloc, np.int32)
        self._seq_id = None if _auto else np.zeros((n_tokens_alloc, n_seq_max), np.int32)
        self._logits = None if _auto else np.zeros(n_tokens_alloc, np.int8)

    def _field(self, value: np.ndarray | None) -> np.ndarray | None:
        if self._freed:
            raise ValueError("the batch was freed")
        return value

    token = property(lambda self: self._field(self._token), doc="int32 token ids (None for an embeddings batch).")
    embd = property(lambda self: self._field(self._embd), doc="float32 input rows, n_tokens * embd, flat as in C.")
    pos = property(lambda self: self._field(self._pos), doc="int32 positions (None: continue sequence 0).")
    n_seq_id = property(lambda self: self._field(self._n_seq_id), doc="How many sequence ids each token has.")
    seq_id = property(lambda self: self._field(self._seq_id), doc="int32 sequence ids, one row per token.")
    logits = property(lambda self: self._field(self._logits), doc="int8 output flags (None: the last token only).")

    def __repr__(self) -> str:
        state = " freed" if self._freed else ""
        return f"<llama_batch n_tokens={self.n_tokens} capacity={self._capacity}{state}>"

    def to_native(self, ctx: _native.Context) -> _native.Batch:
        """The native batch for one decode, after checking the fields."""
        if self._freed:
            raise ValueError("the batch was freed")
        n = _int(self.n_tokens, "batch.n_tokens")
        if n < 1:
            raise ValueError("the batch is empty (n_tokens is 0)")
        if n > self._capacity:
            raise ValueError(f"batch.n_tokens = {n} exceeds the batch's capacity of {self._capacity}")
        if self._native is None:
            self._native = _native.Batch(self._capacity, self._n_seq_max, self._embd_width)
        if self._auto:
            pos0 = llama_memory_seq_pos_max(ctx, 0) + 1
            pos = np.arange(pos0, pos0 + n, dtype=np.int32)
            n_seq_id = np.ones(n, np.int32)
            seq_id = np.zeros((n, 1), np.int32)
            logits = np.zeros(n, np.int8)
            logits[-1] = 1
        else:
            pos, n_seq_id, seq_id, logits = self._pos, self._n_seq_id, self._seq_id, self._logits
        self._native.assign(n, self._token, self._embd, pos, n_seq_id, seq_id, logits)
        return self._native


def llama_batch_init(n_tokens: int, embd: int, n_seq_max: int) -> llama_batch:
    """A batch for up to n_tokens tokens (embd > 0: input rows of that width), each in up to n_seq_max sequences."""
    n, width, n_seq = _int(n_tokens, "n_tokens"), _int(embd, "embd"), _int(n_seq_max, "n_seq_max")
    if n < 1:
        raise ValueError("n_tokens must be at least 1")
    if width < 0:
        raise ValueError("embd must be >= 0")
    if not 1 <= n_seq <= LLAMA_MAX_PARALLEL_SEQUENCES:
        raise ValueError(f"n_seq_max must be in [1, {LLAMA_MAX_PARALLEL_SEQUENCES}]")
    return llama_batch(n, width, n_seq)


def llama_batch_get_one(tokens: Sequence[int], n_tokens: int) -> llama_batch:
    """A batch of tokens for sequence 0 continuing where it ends, with the last token's logits."""
    ids = _token_list(tokens, n_tokens)
    if not ids:
        raise ValueError("n_tokens must be at least 1")
    batch = llama_batch(len(ids), 0, 1, _auto=True)
    batch.token[:] = ids
    batch.n_tokens = len(ids)
    return batch


def llama_batch_free(batch: llama_batch) -> None:
    _handle(batch, llama_batch, "batch", "llama_batch_init")
    if batch._auto:
        raise ValueError("batches from llama_batch_get_one are not allocated: do not free them")
    if batch._freed:
        raise ValueError("the batch was already freed")
    batch._freed = True
    batch._native = batch._token = batch._embd = batch._pos = None
    batch._n_seq_id = batch._seq_id = batch._logits = None


def _batch(ctx: Any, batch: Any) -> _native.Batch:
    return _handle(batch, llama_batch, "batch", "llama_batch_init or llama_batch_get_one").to_native(_context(ctx))


def llama_decode(ctx: _native.Context, batch: llama_batch) -> int:
    """0 on success, 1 when the KV cache has no room for the batch, 2 when aborted (as C)."""
    native = _batch(ctx, batch)
    try:
        ctx.decode(native)
    except KVCacheFullError:
        return 1
    except DecodeAbortedError:
        return 2
    return 0


def llama_encode(ctx: _native.Context, batch: llama_batch) -> int:
    """Run the encoder over the batch; 0 on success (failures raise)."""
    ctx_ = _context(ctx)
    ctx_.encode(_batch(ctx_, batch))
    return 0


# --- extended batches (llama_batch_ext) ---


def _batch_ext(batch: Any) -> _native.BatchExt:
    return _handle(batch, _native.BatchExt, "extended batch", "llama_batch_ext_init")


def _embd_rows(embd: Any) -> tuple[np.ndarray, int, int]:
    """(flat float32 data, n_rows, n_embd) from a llama_embd struct, or from a NumPy array (rows x n_embd; 1-D is one row)."""
    if isinstance(embd, ctypes._Pointer):
        embd = embd.contents
    if isinstance(embd, llama_embd):
        n_rows, n_embd = int(embd.n_rows), int(embd.n_embd)
        if not embd.data:
            raise ValueError("embd.data is NULL")
        return np.ctypeslib.as_array(embd.data, shape=(n_rows * n_embd,)), n_rows, n_embd
    rows = np.asarray(embd, dtype=np.float32)
    if rows.ndim == 1:
        rows = rows.reshape(1, -1)
    if rows.ndim != 2:
        raise ValueError(f"embedding rows must be 1-D or 2-D, got {rows.ndim} dimensions")
    return np.ascontiguousarray(rows).reshape(-1), rows.shape[0], rows.shape[1]


def llama_batch_ext_init(ctx: _native.Context) -> _native.BatchExt:
    """An empty extended batch for this context (room for its n_batch entries); only llama_process
    on the same context takes it. Positions are not filled in: set each with llama_batch_ext_set_pos."""
    return _native.BatchExt(_context(ctx))


def llama_batch_ext_free(batch: _native.BatchExt) -> None:
    """Free the batch; using it (or freeing it) again raises ValueError."""
    _batch_ext(batch).free()


def llama_batch_ext_clear(batch: _native.BatchExt) -> None:
    _batch_ext(batch).clear()


def llama_batch_ext_add(batch: _native.BatchExt, seq_id: int) -> int:
    """Add an entry with neither token nor embedding (set one before processing): its batch index,
    -1 when the batch is full, -3 for a sequence id outside [0, n_seq_max)."""
    return _batch_ext(batch).add(_int(seq_id, "seq_id"))


def llama_batch_ext_add_token(batch: _native.BatchExt, seq_id: int, id: int) -> int:  # noqa: A002
    """Add a token of a sequence: its batch index, -1 (full), -2 (token id outside the vocabulary:
    the entry stays, empty, as in C) or -3 (bad sequence id)."""
    return _batch_ext(batch).add_token(_int(seq_id, "seq_id"), _int(id, "id"))


def llama_batch_ext_add_embd(batch: _native.BatchExt, seq_id: int, embd: Any) -> int:
    """Add an input embedding (a llama_embd, or float32 rows): its batch index, -1 (full), -2 (its size
    is not the model's input width: the entry stays, empty, as in C) or -3 (bad sequence id)."""
    data, n_rows, n_embd = _embd_rows(embd)
    return _batch_ext(batch).add_embd(_int(seq_id, "seq_id"), data, n_rows, n_embd)


def llama_batch_ext_add_seq(batch: _native.BatchExt, idx: int, seq_id: int) -> bool:
    """Put entry idx in another sequence too (same position); False for a bad index or sequence id."""
    return _batch_ext(batch).add_seq(_int(idx, "idx"), _int(seq_id, "seq_id"))


def llama_batch_ext_set_embd_token(batch: _native.BatchExt, idx: int, embd: Any) -> bool:
    """Give entry idx an input embedding (a llama_embd, or float32 rows); False when the index is bad,
    the entry has one already or the size does not fit."""
    data, n_rows, n_embd = _embd_rows(embd)
    return _batch_ext(batch).set_embd_token(_int(idx, "idx"), data, n_rows, n_embd)


def llama_batch_ext_set_embd_state(batch: _native.BatchExt, idx: int, embd: Any) -> bool:
    """Carried-over hidden state for entry idx: not implemented by this llama.cpp, always False."""
    data, n_rows, n_embd = _embd_rows(embd)
    return _batch_ext(batch).set_embd_state(_int(idx, "idx"), data, n_rows, n_embd)


def llama_batch_ext_set_output_embd(batch: _native.BatchExt, idx: int, value: bool) -> bool:
    """Request entry idx's output (for now the same flag as llama_batch_ext_set_output_logits); False for a bad index."""
    return _batch_ext(batch).set_output(_int(idx, "idx"), bool(value))


def llama_batch_ext_set_output_logits(batch: _native.BatchExt, idx: int, value: bool) -> bool:
    """Request entry idx's logits; False for a bad index."""
    return _batch_ext(batch).set_output(_int(idx, "idx"), bool(value))


def llama_batch_ext_set_pos(batch: _native.BatchExt, idx: int, pos: Any) -> bool:
    """Set entry idx's position: an int, a sequence, or a ctypes llama_pos array/pointer/byref. A token
    entry takes one; an embedding entry of an M-RoPE model takes 4. False for a bad index; a negative
    position or too few raise ValueError."""
    b = _batch_ext(batch)
    if pos is None:
        return False
    i = _int(idx, "idx")
    if isinstance(pos, (int, np.integer, ctypes.c_int32)):
        values = [_int(pos, "pos")]
    elif isinstance(pos, ctypes._Pointer):  # C reads as many as the entry takes
        values = [int(pos[k]) for k in range(b.positions_needed(i))] if pos else []
    elif hasattr(pos, "_obj") and isinstance(pos._obj, (ctypes.Array, ctypes.c_int32)):  # ctypes.byref(...)
        obj = pos._obj
        values = [int(v) for v in obj] if isinstance(obj, ctypes.Array) else [int(obj.value)]
    else:
        values = [_int(v, "pos") for v in pos]
    if not values:
        return False
    return b.set_pos(i, values)


def llama_process(ctx: _native.Context, type: int, batch: _native.BatchExt) -> int:  # noqa: A002
    """Encode (LLAMA_PROCESS_TYPE_ENCODE) or decode (LLAMA_PROCESS_TYPE_DECODE) an extended batch made for
    this context: 0, 1 when the KV cache has no room, 2 when aborted, as llama_decode. An invalid batch
    (an entry without content or position, mixed content, a batch llama.cpp rejects) raises ValueError,
    other failures DecodeError. Outputs are read as after llama_decode (llama_get_logits_ith, ...)."""
    return _context(ctx).process(_int(type, "type"), _batch_ext(batch))


# --- outputs ---


def _output_rows(ctx: _native.Context) -> list[int]:
    return list(range(-_context(ctx).n_outputs, 0))


def llama_get_logits(ctx: _native.Context) -> np.ndarray:
    """All output rows of the last decode, flat (n_outputs * n_vocab float32) as C's pointer."""
    rows = _output_rows(ctx)
    if not rows:
        return np.zeros(0, np.float32)
    return ctx.logits_rows(rows).reshape(-1)


def llama_get_logits_ith(ctx: _native.Context, i: int) -> np.ndarray:
    """One output's logits (n_vocab float32): i is a batch index, or negative from the last output.
    With a backend sampler attached (llama_set_sampler), as in C, the logits its samplers left: one per
    candidate of llama_get_sampled_candidates_ith, which may be fewer than n_vocab."""
    return _context(ctx).logits(_int(i, "i"))


def llama_get_embeddings(ctx: _native.Context) -> np.ndarray:
    """Every output token's embedding of the last decode, flat (n_outputs * n_embd float32)."""
    rows = _output_rows(ctx)
    if not rows:
        return np.zeros(0, np.float32)
    return np.concatenate([ctx.embeddings(i) for i in rows])


def llama_get_embeddings_ith(ctx: _native.Context, i: int) -> np.ndarray:
    return _context(ctx).embeddings(_int(i, "i"))


def llama_get_embeddings_seq(ctx: _native.Context, seq_id: int) -> np.ndarray:
    """A sequence's pooled embedding (rank pooling: its scores)."""
    return _context(ctx).embeddings_seq(_int(seq_id, "seq_id"))


# --- backend sampling (samplers run in the graph) [EXPERIMENTAL in llama.cpp] ---


def llama_set_sampler(ctx: _native.Context, seq_id: int, smpl: _native.Sampler | None) -> bool:
    """Run a sampler chain inside the graph for sequence seq_id (None detaches it); False when llama.cpp
    cannot offload it (an empty chain, tensor split mode). Every decode then samples that sequence's
    outputs: read them with llama_get_sampled_token_ith (and _probs/_logits/_candidates); llama_sampler_sample
    returns the sampled token. The context does not take ownership in C; here it keeps the chain alive
    while attached, and freeing the chain (llama_sampler_free) or changing its members raises ValueError
    until it is detached or the context is freed. A chain is attached to one context and sequence at a
    time, and once only (llama.cpp sets it up for the backend once): attach a llama_sampler_clone again."""
    return _context(ctx).set_sampler(_int(seq_id, "seq_id"), None if smpl is None else _sampler(smpl))


def llama_get_sampled_token_ith(ctx: _native.Context, i: int) -> int:
    """The token the graph's sampler chose for output i, LLAMA_TOKEN_NULL (-1) when none was sampled
    there (no sampler attached to its sequence). An index without output raises IndexError."""
    return _context(ctx).sampled_token(_int(i, "i"))


def llama_get_sampled_probs_ith(ctx: _native.Context, i: int) -> np.ndarray | None:
    """A copy of the probabilities the graph's samplers left for output i (float32, one per candidate),
    None when they produced none. An index without output raises IndexError."""
    return _context(ctx).sampled_floats(_int(i, "i"), True)


def llama_get_sampled_probs_count_ith(ctx: _native.Context, i: int) -> int:
    return _context(ctx).sampled_count(_int(i, "i"), 0)


def llama_get_sampled_logits_ith(ctx: _native.Context, i: int) -> np.ndarray | None:
    """A copy of the logits the graph's samplers left for output i (float32, one per candidate),
    None when they produced none."""
    return _context(ctx).sampled_floats(_int(i, "i"), False)


def llama_get_sampled_logits_count_ith(ctx: _native.Context, i: int) -> int:
    """As C: n_vocab when no backend sampler produced logits in the last decode."""
    return _context(ctx).sampled_count(_int(i, "i"), 1)


def llama_get_sampled_candidates_ith(ctx: _native.Context, i: int) -> np.ndarray | None:
    """A copy of the candidate token ids that the sampled probs/logits of output i belong to (int32);
    every token id, in order, when the graph kept all candidates."""
    return _context(ctx).sampled_candidates(_int(i, "i"))


def llama_get_sampled_candidates_count_ith(ctx: _native.Context, i: int) -> int:
    """As C: 0 when the graph produced no candidate list (all token ids are the candidates)."""
    return _context(ctx).sampled_count(_int(i, "i"), 2)


# --- memory (the memory handle is the context) ---


def llama_memory_clear(mem: _native.Context, data: bool) -> None:
    _context(mem).memory_clear(bool(data))


def llama_memory_seq_rm(mem: _native.Context, seq_id: int, p0: int, p1: int) -> bool:
    return _context(mem).seq_rm(_int(seq_id, "seq_id"), _int(p0, "p0"), _int(p1, "p1"))


def llama_memory_seq_cp(mem: _native.Context, seq_id_src: int, seq_id_dst: int, p0: int, p1: int) -> None:
    _context(mem).seq_cp(_int(seq_id_src, "seq_id_src"), _int(seq_id_dst, "seq_id_dst"), _int(p0, "p0"), _int(p1, "p1"))


def llama_memory_seq_keep(mem: _native.Context, seq_id: int) -> None:
    _context(mem).seq_keep(_int(seq_id, "seq_id"))


def llama_memory_seq_add(mem: _native.Context, seq_id: int, p0: int, p1: int, delta: int) -> None:
    _context(mem).seq_add(_int(seq_id, "seq_id"), _int(p0, "p0"), _int(p1, "p1"), _int(delta, "delta"))


def llama_memory_seq_div(mem: _native.Context, seq_id: int, p0: int, p1: int, d: int) -> None:
    _context(mem).seq_div(_int(seq_id, "seq_id"), _int(p0, "p0"), _int(p1, "p1"), _int(d, "d"))


def llama_memory_seq_pos_min(mem: _native.Context, seq_id: int) -> int:
    return _context(mem).seq_pos_min(_int(seq_id, "seq_id"))


def llama_memory_seq_pos_max(mem: _native.Context, seq_id: int) -> int:
    return _context(mem).seq_pos_max(_int(seq_id, "seq_id"))


def llama_memory_can_shift(mem: _native.Context) -> bool:
    return _context(mem).can_shift


# --- state ---


def llama_state_get_size(ctx: _native.Context) -> int:
    return _context(ctx).state_size()


def _state_out(data: bytes, dst: Any, size: int) -> int | bytes:
    """A state's bytes, or copied into dst: their length, or 0 when they do not fit (as C)."""
    if dst is None:
        return data
    view = _byte_view(dst, _int(size, "size"), "dst")
    if len(data) > view.size:
        return 0
    view[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    return len(data)


def llama_state_get_data(ctx: _native.Context, dst: Any, size: int) -> int | bytes:
    """The context state; into dst (0 when it does not fit, as C) or as bytes when dst is None."""
    data = _context(ctx).state_get()
    return _state_out(data, dst, size)


def llama_state_set_data(ctx: _native.Context, src: Any, size: int) -> int:
    """Restore state; returns the bytes read (ValueError when they do not fit this context)."""
    data = _bytes(src, "src")
    n = _int(size, "size")
    if not 0 <= n <= len(data):
        raise ValueError(f"size {n} is outside the {len(data)} bytes given")
    return _context(ctx).state_set(data[:n])


def llama_state_seq_get_size(ctx: _native.Context, seq_id: int) -> int:
    return _context(ctx).seq_state_size(_int(seq_id, "seq_id"))


def llama_state_seq_get_data(ctx: _native.Context, dst: Any, size: int, seq_id: int) -> int | bytes:
    data = _context(ctx).seq_state_get(_int(seq_id, "seq_id"))
    return _state_out(data, dst, size)


def llama_state_seq_set_data(ctx: _native.Context, src: Any, size: int, dest_seq_id: int) -> int:
    data = _bytes(src, "src")
    n = _int(size, "size")
    if not 0 <= n <= len(data):
        raise ValueError(f"size {n} is outside the {len(data)} bytes given")
    return _context(ctx).seq_state_set(data[:n], _int(dest_seq_id, "dest_seq_id"))


def _check_flags(flags: Any) -> int:
    return _int(flags, "flags")


def llama_state_seq_get_size_ext(ctx: _native.Context, seq_id: int, flags: int) -> int:
    return _context(ctx).seq_state_size_ext(_int(seq_id, "seq_id"), _check_flags(flags))


def llama_state_seq_get_data_ext(ctx: _native.Context, dst: Any, size: int, seq_id: int, flags: int) -> int | bytes:
    """One sequence's state with LLAMA_STATE_SEQ_FLAGS_*; into dst (0 when it does not fit) or as bytes."""
    data = _context(ctx).seq_state_get_ext(_int(seq_id, "seq_id"), _check_flags(flags))
    return _state_out(data, dst, size)


def llama_state_seq_set_data_ext(ctx: _native.Context, src: Any, size: int, dest_seq_id: int, flags: int) -> int:
    data = _bytes(src, "src")
    n = _int(size, "size")
    if not 0 <= n <= len(data):
        raise ValueError(f"size {n} is outside the {len(data)} bytes given")
    return _context(ctx).seq_state_set_ext(data[:n], _int(dest_seq_id, "dest_seq_id"), _check_flags(flags))


def llama_state_save_file(ctx: _native.Context, path_session: bytes | str, tokens: Sequence[int],
                          n_token_count: int) -> bool:
    """Write the state and its tokens in llama.cpp's session format; False on failure."""
    return _context(ctx).state_save_file(_path(path_session), _token_list(tokens, n_token_count))


def llama_state_load_file(ctx: _native.Context, path_session: bytes | str, tokens_out: Any,
                          n_token_capacity: int, n_token_count_out: Any) -> bool:
    """Restore a session file; its tokens go to tokens_out and their count to n_token_count_out
    (a ctypes integer, byref() of one, or a one-element list). False when it does not load."""
    capacity = _int(n_token_capacity, "n_token_capacity")
    if capacity < 0:
        raise ValueError("n_token_capacity must be >= 0")
    tokens = _context(ctx).state_load_file(_path(path_session), capacity)
    if tokens is None:
        return False
    if tokens_out is not None:
        _write_tokens(tokens_out, capacity, tokens, "tokens_out")
    _store_count(n_token_count_out, len(tokens))
    return True


def llama_state_seq_save_file(ctx: _native.Context, filepath: bytes | str, seq_id: int, tokens: Sequence[int],
                              n_token_count: int) -> int:
    """Write one sequence's state; the bytes written, 0 on failure."""
    tokens_ = _token_list(tokens, n_token_count)
    return _context(ctx).seq_state_save_file(_path(filepath), _int(seq_id, "seq_id"), tokens_)


def llama_state_seq_load_file(ctx: _native.Context, filepath: bytes | str, dest_seq_id: int, tokens_out: Any,
                              n_token_capacity: int, n_token_count_out: Any) -> int:
    """Load a sequence state file into dest_seq_id; the bytes read, 0 when it does not load."""
    capacity = _int(n_token_capacity, "n_token_capacity")
    if capacity < 0:
        raise ValueError("n_token_capacity must be >= 0")
    loaded = _context(ctx).seq_state_load_file(_path(filepath), _int(dest_seq_id, "dest_seq_id"), capacity)
    if loaded is None:
        return 0
    n_read, tokens = loaded
    if tokens_out is not None:
        _write_tokens(tokens_out, capacity, tokens, "tokens_out")
    _store_count(n_token_count_out, len(tokens))
    return n_read


# llama.cpp's older names for the state functions.
llama_get_state_size = llama_state_get_size
llama_copy_state_data = llama_state_get_data
llama_set_state_data = llama_state_set_data
llama_load_session_file = llama_state_load_file
llama_save_session_file = llama_state_save_file


# --- vocabulary ---


def llama_vocab_type(vocab: _native.Vocab) -> int:
    return _vocab(vocab).type


def llama_vocab_n_tokens(vocab: _native.Vocab) -> int:
    return _vocab(vocab).n_tokens


def llama_vocab_get_text(vocab: _native.Vocab, token: int) -> bytes:
    return _vocab(vocab).token_text(_int(token, "token"))


def llama_vocab_get_score(vocab: _native.Vocab, token: int) -> float:
    return _vocab(vocab).token_score(_int(token, "token"))


def llama_vocab_get_attr(vocab: _native.Vocab, token: int) -> int:
    return _vocab(vocab).token_attr(_int(token, "token"))


def llama_vocab_is_eog(vocab: _native.Vocab, token: int) -> bool:
    return _vocab(vocab).is_eog(_int(token, "token"))


def llama_vocab_is_control(vocab: _native.Vocab, token: int) -> bool:
    return _vocab(vocab).is_control(_int(token, "token"))


def llama_vocab_bos(vocab: _native.Vocab) -> int:
    return _vocab(vocab).bos


def llama_vocab_eos(vocab: _native.Vocab) -> int:
    return _vocab(vocab).eos


def llama_vocab_eot(vocab: _native.Vocab) -> int:
    return _vocab(vocab).eot


def llama_vocab_sep(vocab: _native.Vocab) -> int:
    return _vocab(vocab).sep


def llama_vocab_nl(vocab: _native.Vocab) -> int:
    return _vocab(vocab).nl


def llama_vocab_pad(vocab: _native.Vocab) -> int:
    return _vocab(vocab).pad


def llama_vocab_mask(vocab: _native.Vocab) -> int:
    return _vocab(vocab).mask


def llama_vocab_fim_pre(vocab: _native.Vocab) -> int:
    return _vocab(vocab).fim_pre


def llama_vocab_fim_suf(vocab: _native.Vocab) -> int:
    return _vocab(vocab).fim_suf


def llama_vocab_fim_mid(vocab: _native.Vocab) -> int:
    return _vocab(vocab).fim_mid


def llama_vocab_fim_pad(vocab: _native.Vocab) -> int:
    return _vocab(vocab).fim_pad


def llama_vocab_fim_rep(vocab: _native.Vocab) -> int:
    return _vocab(vocab).fim_rep


def llama_vocab_fim_sep(vocab: _native.Vocab) -> int:
    return _vocab(vocab).fim_sep


def llama_vocab_cls(vocab: _native.Vocab) -> int:
    """Deprecated by llama.cpp: the classification token is the BOS token."""
    return llama_vocab_bos(vocab)


def llama_vocab_get_suppress_tokens(vocab: _native.Vocab, n_suppress_tokens: Any = None) -> list[int]:
    """The tokens the model says never to sample; their count also goes to n_suppress_tokens
    (a ctypes integer, byref() of one, or a list) when given."""
    tokens = list(_vocab(vocab).suppress_tokens)
    _store_count(n_suppress_tokens, len(tokens))
    return tokens


def llama_vocab_get_add_bos(vocab: _native.Vocab) -> bool:
    return _vocab(vocab).add_bos


def llama_vocab_get_add_eos(vocab: _native.Vocab) -> bool:
    return _vocab(vocab).add_eos


def llama_vocab_get_add_sep(vocab: _native.Vocab) -> bool:
    return _vocab(vocab).add_sep


def llama_tokenize(vocab: _native.Vocab, text: bytes | str, text_len: int, tokens: Any, n_tokens_max: int,
                   add_special: bool, parse_special: bool) -> int | list[int]:
    """Text to token ids: the count written into `tokens` (-count when more than n_tokens_max),
    or the list of ids when `tokens` is None."""
    data = _bytes(text, "text")
    n = _int(text_len, "text_len")
    if not 0 <= n <= len(data):
        raise ValueError(f"text_len = {n} is outside the {len(data)} bytes of text")
    ids = _vocab(vocab).tokenize(data[:n], bool(add_special), bool(parse_special))
    if tokens is None:
        return ids
    capacity = _int(n_tokens_max, "n_tokens_max")
    if len(ids) > capacity:
        return -len(ids)
    _write_tokens(tokens, capacity, ids, "tokens")
    return len(ids)


def llama_token_to_piece(vocab: _native.Vocab, token: int, buf: Any, length: int, lstrip: int,
                         special: bool) -> int | bytes:
    """One token's bytes: the count written into buf (-needed when length is too small, no NUL),
    or the bytes when buf is None."""
    piece = _vocab(vocab).token_to_piece(_int(token, "token"), _int(lstrip, "lstrip"), bool(special))
    if buf is None:
        return piece
    if len(piece) > _int(length, "length"):
        return -len(piece)
    return _write_bytes(buf, length, piece, "buf")


def llama_detokenize(vocab: _native.Vocab, tokens: Sequence[int], n_tokens: int, text: Any, text_len_max: int,
                     remove_special: bool, unparse_special: bool) -> int | bytes:
    """Token ids to text: the count written into `text` (-needed when too small), or the bytes
    when `text` is None."""
    out = _vocab(vocab).detokenize(_token_list(tokens, n_tokens), bool(remove_special), bool(unparse_special))
    if text is None:
        return out
    if len(out) > _int(text_len_max, "text_len_max"):
        return -len(out)
    return _write_bytes(text, text_len_max, out, "text")


# --- chat templates ---


def _message(message: Any) -> tuple[str, str]:
    if isinstance(message, Mapping):
        role, content = message.get("role"), message.get("content")
    elif isinstance(message, tuple) and len(message) == 2:
        role, content = message
    else:
        role, content = getattr(message, "role", None), getattr(message, "content", None)
    if role is None or content is None:
        raise TypeError("each chat message needs a role and a content (dict, (role, content) pair or "
                        f"llama_chat_message), got {message!r}")
    return _bytes(role, "role").decode("utf-8", "replace"), _bytes(content, "content").decode("utf-8", "replace")


def llama_chat_apply_template(tmpl: bytes | str, chat: Sequence[Any], n_msg: int, add_ass: bool,
                              buf: Any, length: int) -> int | bytes:
    """Format the first n_msg messages with a llama.cpp built-in template (a name or template text):
    the full length, with as much as fits copied into buf, or the bytes when buf is None."""
    if tmpl is None:
        raise ValueError("tmpl is None: pass a template (llama_model_chat_template(model, None) gives the "
                         "model's) or a built-in name such as b'chatml'")
    n = _int(n_msg, "n_msg")
    if not 0 <= n <= len(chat):
        raise ValueError(f"n_msg = {n} is outside the {len(chat)} messages given")
    messages = [_message(m) for m in chat[:n]]
    out = _native.chat_apply_template(_bytes(tmpl, "tmpl").decode("utf-8", "replace"), messages, bool(add_ass))
    if buf is None:
        return out
    view = _byte_view(buf, _int(length, "length"), "buf")
    k = min(len(out), view.size)
    view[:k] = np.frombuffer(out, dtype=np.uint8, count=k)
    view[k:] = 0  # strncpy pads with NULs
    return len(out)


def llama_chat_builtin_templates(output: list[Any] | None, len: int) -> int | list[bytes]:  # noqa: A002
    """The built-in template names: how many there are, with the first `len` put in `output`
    (or the list of names when output is None)."""
    names = [name.encode() for name in _native.chat_builtin_templates()]
    if output is None:
        return names
    if not isinstance(output, list):
        raise TypeError("output must be a list (or None to get the names back)")
    count = _int(len, "len")
    output[:count] = names[:count]
    return builtins.len(names)


# --- samplers ---


def llama_sampler_chain_init(params: llama_sampler_chain_params) -> _native.Sampler:
    """An empty chain; llama_sampler_chain_add gives it samplers, which it then owns."""
    no_perf = getattr(params, "no_perf", None)
    if no_perf is None:
        raise TypeError("params must come from llama_sampler_chain_default_params()")
    return _native.Sampler.chain(bool(no_perf))


def llama_sampler_chain_add(chain: _native.Sampler, smpl: _native.Sampler) -> None:
    _sampler(chain).add(_sampler(smpl))


def llama_sampler_chain_get(chain: _native.Sampler, i: int) -> _native.Sampler:
    """The i-th sampler of the chain (still owned by it); -1 gives the chain itself."""
    return _sampler(chain).get(_int(i, "i"))


def llama_sampler_chain_n(chain: _native.Sampler) -> int:
    return _sampler(chain).n


def llama_sampler_chain_remove(chain: _native.Sampler, i: int) -> _native.Sampler:
    """Take the i-th sampler out of the chain; the caller owns (and may free) it again."""
    return _sampler(chain).remove(_int(i, "i"))


def llama_sampler_init_greedy() -> _native.Sampler:
    return _native.Sampler.greedy()


def llama_sampler_init_dist(seed: int) -> _native.Sampler:
    return _native.Sampler.dist(_int(seed, "seed"))


def llama_sampler_init_top_k(k: int) -> _native.Sampler:
    return _native.Sampler.top_k(_int(k, "k"))


def llama_sampler_init_top_p(p: float, min_keep: int) -> _native.Sampler:
    return _native.Sampler.top_p(float(p), _int(min_keep, "min_keep"))


def llama_sampler_init_min_p(p: float, min_keep: int) -> _native.Sampler:
    return _native.Sampler.min_p(float(p), _int(min_keep, "min_keep"))


def llama_sampler_init_typical(p: float, min_keep: int) -> _native.Sampler:
    return _native.Sampler.typical(float(p), _int(min_keep, "min_keep"))


def llama_sampler_init_temp(t: float) -> _native.Sampler:
    return _native.Sampler.temp(float(t))


def llama_sampler_init_temp_ext(t: float, delta: float, exponent: float) -> _native.Sampler:
    return _native.Sampler.temp_ext(float(t), float(delta), float(exponent))


def llama_sampler_init_xtc(p: float, t: float, min_keep: int, seed: int) -> _native.Sampler:
    return _native.Sampler.xtc(float(p), float(t), _int(min_keep, "min_keep"), _int(seed, "seed"))


def llama_sampler_init_top_n_sigma(n: float) -> _native.Sampler:
    return _native.Sampler.top_n_sigma(float(n))


def llama_sampler_init_mirostat(n_vocab: int, seed: int, tau: float, eta: float, m: int) -> _native.Sampler:
    return _native.Sampler.mirostat(_int(n_vocab, "n_vocab"), _int(seed, "seed"), float(tau), float(eta), _int(m, "m"))


def llama_sampler_init_mirostat_v2(seed: int, tau: float, eta: float) -> _native.Sampler:
    return _native.Sampler.mirostat_v2(_int(seed, "seed"), float(tau), float(eta))


def llama_sampler_init_grammar(vocab: _native.Vocab, grammar_str: bytes | str,
                               grammar_root: bytes | str) -> _native.Sampler:
    """A GBNF grammar sampler; GrammarError when the grammar does not parse or lacks the root rule."""
    return _native.Sampler.grammar(_vocab(vocab), _bytes(grammar_str, "grammar_str").decode(),
                                   _bytes(grammar_root, "grammar_root").decode())


def llama_sampler_init_grammar_lazy_patterns(vocab: _native.Vocab, grammar_str: bytes | str, grammar_root: bytes | str,
                                             trigger_patterns: Sequence[bytes | str], num_trigger_patterns: int,
                                             trigger_tokens: Sequence[int], num_trigger_tokens: int) -> _native.Sampler:
    n_patterns = _int(num_trigger_patterns, "num_trigger_patterns")
    if not 0 <= n_patterns <= len(trigger_patterns or ()):
        raise ValueError("num_trigger_patterns is outside the patterns given")
    patterns = [_bytes(p, "a trigger pattern").decode() for p in (trigger_patterns or ())[:n_patterns]]
    tokens = _token_list(trigger_tokens or [], num_trigger_tokens, "trigger tokens")
    return _native.Sampler.grammar_lazy_patterns(_vocab(vocab), _bytes(grammar_str, "grammar_str").decode(),
                                                 _bytes(grammar_root, "grammar_root").decode(), patterns, tokens)


def llama_sampler_init_penalties(n_vocab: int, penalty_last_n: int, penalty_repeat: float, penalty_freq: float,
                                 penalty_present: float) -> _native.Sampler:
    return _native.Sampler.penalties(_int(n_vocab, "n_vocab"), _int(penalty_last_n, "penalty_last_n"),
                                     float(penalty_repeat), float(penalty_freq), float(penalty_present))


def llama_sampler_init_dry(vocab: _native.Vocab, dry_multiplier: float, dry_base: float, dry_allowed_length: int,
                           dry_penalty_last_n: int, seq_breakers: Sequence[bytes | str] | None,
                           num_breakers: int) -> _native.Sampler:
    n = _int(num_breakers, "num_breakers")
    breakers = list(seq_breakers or ())
    if not 0 <= n <= len(breakers):
        raise ValueError("num_breakers is outside the sequence breakers given")
    return _native.Sampler.dry(_vocab(vocab), float(dry_multiplier), float(dry_base),
                               _int(dry_allowed_length, "dry_allowed_length"),
                               _int(dry_penalty_last_n, "dry_penalty_last_n"),
                               [_bytes(b, "a sequence breaker").decode() for b in breakers[:n]])


_TRIGGER_SPECIAL = re.compile(r"[.^$|()*+?\[\]{}\\]")


def llama_sampler_init_grammar_lazy(vocab: _native.Vocab, grammar_str: bytes | str, grammar_root: bytes | str,
                                    trigger_words: Sequence[bytes | str], num_trigger_words: int,
                                    trigger_tokens: Sequence[int], num_trigger_tokens: int) -> _native.Sampler:
    """Deprecated by llama.cpp: a lazy grammar triggered by literal words (made into the one
    pattern llama.cpp would build) or tokens."""
    n_words = _int(num_trigger_words, "num_trigger_words")
    words = list(trigger_words or ())
    if not 0 <= n_words <= len(words):
        raise ValueError("num_trigger_words is outside the words given")
    patterns = []
    if n_words:
        escaped = [_TRIGGER_SPECIAL.sub(lambda m: "\\" + m.group(0), _bytes(w, "a trigger word").decode())
                   for w in words[:n_words]]
        patterns = ["[\\s\\S]*?(" + "|".join(escaped) + ")[\\s\\S]*"]
    return llama_sampler_init_grammar_lazy_patterns(vocab, grammar_str, grammar_root, patterns, len(patterns),
                                                    trigger_tokens, num_trigger_tokens)


def llama_sampler_init_adaptive_p(target: float, decay: float, seed: int) -> _native.Sampler:
    """Select tokens near a target probability (negative: disabled), adapting with an EMA of
    the given decay in [0, 0.99]; like dist, it picks the token, so it goes last in a chain."""
    return _native.Sampler.adaptive_p(float(target), float(decay), _int(seed, "seed"))


def llama_sampler_init_infill(vocab: _native.Vocab) -> _native.Sampler:
    """The fill-in-the-middle sampler (use after top-k and top-p)."""
    return _native.Sampler.infill(_vocab(vocab))


def _bias_pairs(logit_bias: Any) -> list[tuple[int, float]]:
    if isinstance(logit_bias, Mapping):
        return [(int(t), float(b)) for t, b in logit_bias.items()]
    pairs = []
    for entry in logit_bias:
        if hasattr(entry, "token") and hasattr(entry, "bias"):
            pairs.append((int(entry.token), float(entry.bias)))
        else:
            token, bias = entry
            pairs.append((int(token), float(bias)))
    return pairs


def llama_sampler_init_logit_bias(n_vocab: int, n_logit_bias: int,
                                  logit_bias: Iterable[llama_logit_bias] | Mapping[int, float]) -> _native.Sampler:
    """Add bias to chosen tokens' logits; logit_bias holds llama_logit_bias, (token, bias) pairs or a dict."""
    pairs = _bias_pairs(logit_bias if logit_bias is not None else ())
    n = _int(n_logit_bias, "n_logit_bias")
    if not 0 <= n <= len(pairs):
        raise ValueError(f"n_logit_bias = {n} is outside the {len(pairs)} biases given")
    return _native.Sampler.logit_bias(_int(n_vocab, "n_vocab"), pairs[:n])


# (field name, argument count) of llama.h's struct llama_sampler_i, in order.
_SAMPLER_I_FIELDS = (("name", 1), ("accept", 2), ("apply", 2), ("reset", 1), ("clone", 1), ("free", 1),
                     ("backend_init", 3), ("backend_accept", 4), ("backend_apply", 4), ("backend_set_input", 1),
                     ("backend_reset", 1), ("copy_state", 2))


def _sampler_iface(iface: Any) -> ctypes.Structure:
    if isinstance(iface, ctypes._Pointer):
        if not iface:
            raise ValueError("iface is NULL")
        target = iface.contents
    else:
        target = getattr(iface, "_obj", iface)  # ctypes.byref(struct)
    if not isinstance(target, ctypes.Structure):
        raise TypeError(f"iface must be a llama_sampler_i struct, a pointer to one or byref() of one, "
                        f"got {type(iface).__name__}")
    fields = list(getattr(type(target), "_fields_", ()))
    names = [f[0] for f in fields]
    if names != [n for n, _ in _SAMPLER_I_FIELDS]:
        raise ValueError(f"iface's fields {names} are not those of llama.h's struct llama_sampler_i "
                         f"{[n for n, _ in _SAMPLER_I_FIELDS]}")
    if ctypes.sizeof(target) != _native.Sampler.sizeof_iface():
        raise ValueError(f"iface has {ctypes.sizeof(target)} bytes, llama.h's struct llama_sampler_i "
                         f"{_native.Sampler.sizeof_iface()}")
    for i, ((name, ftype), (_, n_args)) in enumerate(zip(fields, _SAMPLER_I_FIELDS)):
        if getattr(type(target), name).offset != i * ctypes.sizeof(ctypes.c_void_p):
            raise ValueError(f"iface.{name} is not where llama.h's struct llama_sampler_i has it")
        if ftype is ctypes.c_void_p:
            continue  # a raw C function address
        if not issubclass(ftype, ctypes._CFuncPtr):
            raise TypeError(f"iface.{name} must be a ctypes function pointer type (CFUNCTYPE), not {ftype.__name__}")
        if len(ftype._argtypes_ or ()) != n_args:
            raise ValueError(f"iface.{name}'s CFUNCTYPE takes {len(ftype._argtypes_ or ())} arguments, "
                             f"llama.h's {n_args}")
        if name == "name" and ftype._restype_ not in (ctypes.c_char_p, ctypes.c_void_p):
            raise ValueError("iface.name's CFUNCTYPE must return c_char_p (or c_void_p)")
        if name == "clone" and ftype._restype_ is not ctypes.c_void_p:
            raise ValueError("iface.clone's CFUNCTYPE must return c_void_p (a struct llama_sampler *)")
    return target


def llama_sampler_init(iface: Any, ctx: Any) -> _native.Sampler:
    """A sampler whose callbacks are Python functions: iface is a `llama_sampler_i` (or pointer to, or
    byref() of one) whose fields are CFUNCTYPE callbacks (llama_sampler_i_apply(...), ...) or NULL
    (the type called with 0); ctx is a c_void_p, an int address or None, handed back as `smpl->ctx`
    (cast the callbacks' first argument to POINTER(llama_sampler) to read it). The handle works
    wherever other samplers do and keeps iface, its callbacks and ctx alive while the sampler (alone,
    in a chain or attached to a context) exists; llama.cpp reads the struct on every call, so
    changing a field takes effect at once.

    As llama.h says: apply is required; name, accept, reset may be NULL (llama_sampler_name then
    gives b"(null)"); clone and free may be NULL only when ctx is None. A sampler with ctx but no
    clone cannot be cloned (ValueError where llama.cpp would abort); without ctx, llama.cpp clones it
    as another sampler on the same iface. A clone callback returns a new sampler's address,
    `llama_sampler_init(...).address`: the clone takes that sampler over (anything else raises).
    llama_sampler_copy needs copy_state, unless the sampler has neither ctx nor clone. backend_*
    callbacks are not supported (must be NULL). free is called once, when the sampler (or its chain)
    is freed or its last handle goes.

    Callbacks run in the calling thread with the GIL, outside the context's lock (they may use the
    context); freeing or changing the sampler (or its chain) while one runs raises ValueError. A
    callback that raises is reported by sys.unraisablehook and llama.cpp carries on: a void callback
    simply ends, but name and clone return an undefined value (clone: ValueError when that is not a
    sampler to adopt; name: undefined, so do not let it raise). A name callback with restype
    c_char_p should return an int address of a buffer that outlives the sampler
    (`ctypes.addressof(buf)`): returned bytes make ctypes leak them with a RuntimeWarning."""
    target = _sampler_iface(iface)
    if ctx is None:
        address = 0
    elif isinstance(ctx, int) and not isinstance(ctx, bool):
        address = ctx
    elif isinstance(ctx, (ctypes.c_void_p, ctypes._Pointer)):
        address = ctypes.cast(ctx, ctypes.c_void_p).value or 0
    else:
        raise TypeError(f"ctx must be a ctypes.c_void_p, a ctypes pointer, an int address or None, "
                        f"got {type(ctx).__name__}")
    if not 0 <= address < 1 << (8 * ctypes.sizeof(ctypes.c_void_p)):
        raise ValueError("ctx is not a valid address")
    return _native.Sampler.custom(ctypes.addressof(target), ctypes.sizeof(target), address, (iface, target, ctx))


def llama_sampler_name(smpl: _native.Sampler) -> bytes:
    return _sampler(smpl).name.encode()


def llama_sampler_accept(smpl: _native.Sampler, token: int) -> None:
    _sampler(smpl).accept(_int(token, "token"))


def llama_sampler_reset(smpl: _native.Sampler) -> None:
    _sampler(smpl).reset()


def llama_sampler_clone(smpl: _native.Sampler) -> _native.Sampler:
    return _sampler(smpl).clone()


def llama_sampler_free(smpl: _native.Sampler) -> None:
    """Free a sampler (a chain with its members); a sampler owned by a chain raises ValueError."""
    _sampler(smpl).free()


def llama_sampler_copy(src: _native.Sampler, dst: _native.Sampler) -> None:
    """Give dst src's state; both must be samplers (or chains) of the same kind."""
    _sampler(dst).copy_from(_sampler(src))


def _token_data_array(cur_p: Any) -> llama_token_data_array:
    if isinstance(cur_p, ctypes._Pointer):
        return cur_p.contents
    target = getattr(cur_p, "_obj", cur_p)  # ctypes.byref(arr)
    if not isinstance(target, llama_token_data_array):
        raise TypeError("cur_p must be a llama_token_data_array, a pointer to one or byref() of one")
    return target


def llama_sampler_apply(smpl: _native.Sampler, cur_p: Any) -> None:
    """Apply the sampler to the candidates in cur_p (a llama_token_data_array), in place as in C:
    data is reordered and trimmed, size, selected and sorted updated."""
    arr = _token_data_array(cur_p)
    n = int(arr.size)
    if n < 1:
        raise ValueError("cur_p holds no candidates (size is 0)")
    if not arr.data:
        raise ValueError("cur_p.data is NULL")
    data = np.ctypeslib.as_array(ctypes.cast(arr.data, ctypes.POINTER(ctypes.c_uint8)), shape=(n * ctypes.sizeof(llama_token_data),))
    records = data.view(np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)]))
    ids, logits, probs, selected, is_sorted = _sampler(smpl).apply(
        np.ascontiguousarray(records["id"]), np.ascontiguousarray(records["logit"]),
        np.ascontiguousarray(records["p"]), int(arr.selected), bool(arr.sorted))
    k = len(ids)
    records["id"][:k] = ids
    records["logit"][:k] = logits
    records["p"][:k] = probs
    arr.size = k
    arr.selected = selected
    arr.sorted = is_sorted


def llama_sampler_get_seed(smpl: _native.Sampler) -> int:
    return _sampler(smpl).seed


def llama_sampler_sample(smpl: _native.Sampler, ctx: _native.Context, idx: int) -> int:
    """Sample from output `idx` of the last decode (a batch index, or negative from the last
    output) and accept the token."""
    return _sampler(smpl).sample(_context(ctx), _int(idx, "idx"))


# --- LoRA adapters ---


def llama_adapter_lora_init(model: _native.Model, path_lora: bytes | str) -> _native.LoraAdapter:
    return _model(model).load_lora(_path(path_lora))


def llama_adapter_lora_free(adapter: _native.LoraAdapter) -> None:
    """Nothing to free by hand: the adapter goes once no handle or context uses it."""
    _handle(adapter, _native.LoraAdapter, "LoRA adapter", "llama_adapter_lora_init")


def llama_set_adapters_lora(ctx: _native.Context, adapters: Sequence[_native.LoraAdapter] | None, n_adapters: int,
                            scales: Sequence[float] | None) -> int:
    """Use exactly these adapters (with their scales) from now on; 0 on success."""
    n = _int(n_adapters, "n_adapters")
    adapters, scales = list(adapters or ()), list(scales or ())
    if n < 0 or n > len(adapters) or n > len(scales):
        raise ValueError("n_adapters is outside the adapters or scales given")
    pairs = [(_handle(a, _native.LoraAdapter, "LoRA adapter", "llama_adapter_lora_init"), float(s))
             for a, s in zip(adapters[:n], scales[:n])]
    _context(ctx).set_lora_adapters(pairs)
    return 0


def _adapter(adapter: Any) -> _native.LoraAdapter:
    return _handle(adapter, _native.LoraAdapter, "LoRA adapter", "llama_adapter_lora_init")


def llama_adapter_meta_val_str(adapter: _native.LoraAdapter, key: bytes | str, buf: Any,
                               buf_size: int) -> int | bytes | None:
    """An adapter metadata value as text; -1 (None with buf None) when the key is absent."""
    return _meta_value(_adapter(adapter).metadata, key, buf, buf_size)


def llama_adapter_meta_count(adapter: _native.LoraAdapter) -> int:
    return _adapter(adapter).meta_count


def llama_adapter_meta_key_by_index(adapter: _native.LoraAdapter, i: int, buf: Any, buf_size: int) -> int | bytes | None:
    return _meta_out(_adapter(adapter).meta_key_by_index(_int(i, "i")), buf, buf_size)


def llama_adapter_meta_val_str_by_index(adapter: _native.LoraAdapter, i: int, buf: Any,
                                        buf_size: int) -> int | bytes | None:
    return _meta_out(_adapter(adapter).meta_val_by_index(_int(i, "i")), buf, buf_size)


def llama_adapter_get_alora_n_invocation_tokens(adapter: _native.LoraAdapter) -> int:
    return len(_adapter(adapter).alora_invocation_tokens)


def llama_adapter_get_alora_invocation_tokens(adapter: _native.LoraAdapter) -> list[int]:
    """The activated-LoRA invocation tokens ([] for a plain LoRA)."""
    return list(_adapter(adapter).alora_invocation_tokens)


def llama_set_adapter_cvec(ctx: _native.Context, data: Any, len: int, n_embd: int, il_start: int,  # noqa: A002
                           il_end: int) -> int:
    """Apply a control vector (float32, n_embd per layer from layer 1, the first `len` floats of
    data) to layers il_start..il_end; data None clears it. 0 on success; ValueError when n_embd is
    not the model's."""
    n = _int(len, "len")
    if data is None:
        return _context(ctx).set_cvec(None, _int(n_embd, "n_embd"), _int(il_start, "il_start"), _int(il_end, "il_end"))
    values = np.ascontiguousarray(np.asarray(data, dtype=np.float32).reshape(-1))
    if not 0 <= n <= values.size:
        raise ValueError(f"len = {n} is outside the {values.size} floats given")
    return _context(ctx).set_cvec(values[:n], _int(n_embd, "n_embd"), _int(il_start, "il_start"),
                                  _int(il_end, "il_end"))


def llama_set_adapter_lora(ctx: _native.Context, adapter: _native.LoraAdapter, scale: float) -> int:
    """Use this one adapter (llama-cpp-python's older name for llama_set_adapters_lora)."""
    return llama_set_adapters_lora(ctx, [adapter], 1, [scale])


# --- performance ---


def llama_perf_context(ctx: _native.Context) -> llama_perf_context_data:
    return llama_perf_context_data(**_context(ctx).perf())


def llama_perf_context_print(ctx: _native.Context) -> None:
    """Log the summary through llama.cpp's log (see llama_log_set)."""
    _context(ctx).perf_print()


def llama_perf_context_reset(ctx: _native.Context) -> None:
    _context(ctx).perf_reset()


def llama_perf_sampler(chain: _native.Sampler) -> llama_perf_sampler_data:
    t_sample_ms, n_sample = _sampler(chain).perf()
    return llama_perf_sampler_data(t_sample_ms, n_sample)


def llama_perf_sampler_print(chain: _native.Sampler) -> None:
    _sampler(chain).perf_print()


def llama_perf_sampler_reset(chain: _native.Sampler) -> None:
    _sampler(chain).perf_reset()


# --- logging ---


def llama_log_callback(callback: Callable[[int, bytes, Any], Any]) -> Callable[[int, bytes, Any], Any]:
    """llama-cpp-python's callback type, kept so that `@llama_log_callback` code works: returns it as is."""
    return callback


_log_callback: tuple[Any, Any] = (None, None)


def llama_log_get(log_callback: Any = None, user_data: Any = None) -> tuple[Any, Any]:
    """The (callback, user_data) last given to llama_log_set ((None, None): allama's default logger);
    also stored into one-element lists passed as log_callback and user_data, C's out-pointers."""
    for out, value in ((log_callback, _log_callback[0]), (user_data, _log_callback[1])):
        if isinstance(out, list):
            out[:1] = [value]
    return _log_callback


def llama_log_set(log_callback: Callable[[int, bytes, Any], Any] | None, user_data: Any = None) -> None:
    """Send llama.cpp's log calls to log_callback(level, text: bytes, user_data) as llama.cpp makes
    them (GGML_LOG_LEVEL_* levels; text fragments keep their newlines). None restores allama's
    default, the 'allama.native' logger. The callback must not call llama.cpp functions itself."""
    global _log_callback
    _native.set_log_callback(log_callback, user_data)
    _log_callback = (log_callback, user_data) if log_callback is not None else (None, None)


# --- names llama.cpp deprecated that llama-cpp-python code still uses ---

llama_load_model_from_file = llama_model_load_from_file
llama_free_model = llama_model_free
llama_new_context_with_model = llama_init_from_model


def llama_n_vocab(vocab: _native.Vocab) -> int:
    return llama_vocab_n_tokens(vocab)


def llama_n_ctx_train(model: _native.Model) -> int:
    return llama_model_n_ctx_train(model)


def llama_n_embd(model: _native.Model) -> int:
    return llama_model_n_embd(model)


def llama_n_layer(model: _native.Model) -> int:
    return llama_model_n_layer(model)


def llama_n_head(model: _native.Model) -> int:
    return llama_model_n_head(model)


llama_token_get_text = llama_vocab_get_text
llama_token_get_score = llama_vocab_get_score
llama_token_get_attr = llama_vocab_get_attr
llama_token_is_eog = llama_vocab_is_eog
llama_token_is_control = llama_vocab_is_control
llama_token_bos = llama_vocab_bos
llama_token_eos = llama_vocab_eos
llama_token_eot = llama_vocab_eot
llama_token_nl = llama_vocab_nl
llama_token_pad = llama_vocab_pad
llama_add_bos_token = llama_vocab_get_add_bos
llama_add_eos_token = llama_vocab_get_add_eos
llama_token_cls = llama_vocab_cls
llama_token_sep = llama_vocab_sep
llama_token_fim_pre = llama_vocab_fim_pre
llama_token_fim_suf = llama_vocab_fim_suf
llama_token_fim_mid = llama_vocab_fim_mid
llama_token_fim_pad = llama_vocab_fim_pad
llama_token_fim_rep = llama_vocab_fim_rep
llama_token_fim_sep = llama_vocab_fim_sep
llama_apply_adapter_cvec = llama_set_adapter_cvec
