"""Server and model settings, as llama-cpp-python's server names them.

`ServerSettings` (listening, auth, limits) and `ModelSettings` (one model: every `Llama`
parameter plus its alias) read environment variables of the same names (upper case, e.g.
`N_CTX=4096`); `ConfigFileSettings` is a JSON or YAML file holding server settings and a
list of models. `Settings` is both for the common one-model case.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ModelSettings(BaseSettings):
    """One model to serve."""

    model_config = SettingsConfigDict(protected_namespaces=(), extra="ignore")

    model: str = Field(description="Path to the GGUF model file (the first shard of a split model).")
    model_alias: str | None = Field(default=None, description="Name requests use in `model`; default: the path.")
    # model
    n_gpu_layers: int = Field(default=0, description="Layers to offload to the GPU; -1 for all.")
    split_mode: int = Field(default=1, description="How to split the model across GPUs (0 none, 1 layer, 2 row).")
    main_gpu: int = Field(default=0)
    tensor_split: list[float] | None = Field(default=None)
    vocab_only: bool = Field(default=False)
    use_mmap: bool = Field(default=True)
    use_mlock: bool = Field(default=False)
    kv_overrides: list[str] | None = Field(
        default=None, description="key=type:value overrides of GGUF metadata, e.g. tokenizer.ggml.add_bos_token=bool:false")
    rpc_servers: str | None = Field(
        default=None, description="Comma-separated host:port of `allama rpc-server` workers to spread the layers "
                                  "over (n_gpu_layers then defaults to -1: all).")
    # context
    seed: int = Field(default=0xFFFFFFFF, description="Default sampling seed (0xFFFFFFFF: random).")
    n_ctx: int = Field(default=2048, ge=0, description="Context size of each sequence (slot).")
    n_batch: int = Field(default=512, ge=1)
    n_ubatch: int = Field(default=512, ge=1)
    n_threads: int | None = Field(default=None, ge=1)
    n_threads_batch: int | None = Field(default=None, ge=1)
    rope_scaling_type: int = Field(default=-1)
    rope_freq_base: float = Field(default=0.0)
    rope_freq_scale: float = Field(default=0.0)
    yarn_ext_factor: float = Field(default=-1.0)
    yarn_attn_factor: float = Field(default=1.0)
    yarn_beta_fast: float = Field(default=32.0)
    yarn_beta_slow: float = Field(default=1.0)
    yarn_orig_ctx: int = Field(default=0)
    pooling_type: int = Field(default=-1, description="-1: the model's; 0 none, 1 mean, 2 cls, 3 last, 4 rank.")
    embedding: bool = Field(default=False)
    offload_kqv: bool = Field(default=True)
    flash_attn: bool = Field(default=False)
    last_n_tokens_size: int = Field(default=64, ge=0)
    type_k: int | None = Field(default=None)
    type_v: int | None = Field(default=None)
    lora_base: str | None = Field(default=None)
    lora_path: str | None = Field(default=None)
    lora_scale: float = Field(default=1.0)
    lora_adapters: dict[str, str] | None = Field(
        default=None, description="LoRA adapters that requests may name (name -> GGUF path); off unless a request asks.")
    numa: bool | int = Field(default=False)
    mul_mat_q: bool = Field(default=True, description="Accepted for llama-cpp-python compatibility; no effect "
                            "(llama.cpp chooses its matrix kernels itself).")
    logits_all: bool = Field(default=True, description="Accepted for llama-cpp-python compatibility; no effect "
                             "(allama returns logprobs whenever a request asks for them).")
    # prompt cache
    cache: bool = Field(default=False, description="Keep the states of evaluated prompts to reuse their prefixes.")
    cache_type: Literal["ram", "disk"] = Field(default="ram", description="Where `cache` keeps them.")
    cache_size: int = Field(default=2 << 30, ge=0, description="The cache's capacity in bytes.")
    # tokenizer and hub
    hf_tokenizer_config_path: str | None = Field(
        default=None, description="A Hugging Face tokenizer_config.json whose chat_template formats chat "
                                  "(with chat_format hf-tokenizer-config, or no chat_format).")
    hf_pretrained_model_name_or_path: str | None = Field(
        default=None, description="A Hugging Face tokenizer (AutoTokenizer.from_pretrained) to use instead of "
                                  "the GGUF's vocabulary; needs transformers.")
    hf_model_repo_id: str | None = Field(
        default=None, description="A Hugging Face Hub repo to download `model` (a file name or glob) from.")
    # speculative decoding
    draft_model: str | None = Field(default=None, description="Speculative decoding: prompt-lookup-decoding.")
    draft_model_num_pred_tokens: int = Field(default=10, ge=1, description="Tokens the draft model proposes.")
    # chat
    chat_format: str | None = Field(default=None, description="A named chat format or handler; default: the model's template.")
    clip_model_path: str | None = Field(
        default=None, validation_alias=AliasChoices("clip_model_path", "mmproj"),
        description="A multimodal projector (mmproj GGUF): chat messages may then carry image and audio parts.")
    allow_media_urls: bool = Field(default=False, description="Fetch http(s) image URLs in chat messages.")
    allow_media_files: bool = Field(default=False, description="Read local files named in chat messages.")
    chat_template_kwargs: dict[str, Any] | None = Field(default=None)
    # allama
    n_parallel: int = Field(default=4, ge=1, description="Sequences decoded together (continuous batching).")
    max_queue: int = Field(default=1024, ge=0, description="Requests waiting for a slot before 503s.")
    kv_size: int | None = Field(default=None, ge=1, description=(
        "KV cache cells shared by all sequences; default n_ctx (llama-cpp-python's memory). Up to "
        "n_ctx x n_parallel: fewer waits and preemptions under load, for memory."))
    kv_unified: bool = Field(default=True, description=(
        "One KV cache shared by all sequences (kv_size cells). False: a stream of n_ctx cells per "
        "sequence (n_parallel + n_keep of them), much faster with many concurrent streams."))
    n_keep: int | None = Field(default=None, ge=0, description=(
        "Sequence ids beyond n_parallel, for sessions and finished sequences kept for prefix "
        "reuse; default n_parallel "
        "(n_parallel // 4, at least 1, with kv_unified false: each then holds a whole window)."))
    overlap_outputs: bool | None = Field(default=None, description=(
        "Turn a step's tokens into text on a thread of its own while the next step decodes. "
        "Default: on where the decode leaves a CPU free (n_threads below the CPU count, or layers on a GPU)."))
    verbose: bool = Field(default=False)

    @field_validator("kv_overrides", "tensor_split", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _list_items(value)

    @field_validator("draft_model")
    @classmethod
    def _known_draft_model(cls, value: str | None) -> str | None:
        if value is not None and value != "prompt-lookup-decoding":
            raise ValueError(f"draft_model {value!r}: the one draft model is prompt-lookup-decoding")
        return value

    @model_validator(mode="after")
    def _layers_to_rpc_workers(self) -> "ModelSettings":
        if self.rpc_servers and "n_gpu_layers" not in self.model_fields_set:
            self.n_gpu_layers = -1  # workers given: offload every layer to them unless told otherwise
        return self

    @model_validator(mode="after")
    def _projector_for_media_formats(self) -> "ModelSettings":
        from allama.chat.multimodal_presets import HANDLERS_BY_CHAT_FORMAT

        if self.chat_format in HANDLERS_BY_CHAT_FORMAT and not self.clip_model_path:
            raise ValueError(f"chat_format {self.chat_format!r} needs clip_model_path (the projector)")
        if self.chat_format == "hf-tokenizer-config" and not self.hf_tokenizer_config_path:
            raise ValueError("chat_format 'hf-tokenizer-config' needs hf_tokenizer_config_path")
        if self.chat_format == "hf-autotokenizer" and not self.hf_pretrained_model_name_or_path:
            raise ValueError("chat_format 'hf-autotokenizer' needs hf_pretrained_model_name_or_path")
        return self

    @property
    def alias(self) -> str:
        return self.model_alias or self.model

    def llama_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `Llama` (everything but the path and the alias)."""
        fields = self.model_dump(exclude={"model", "model_alias", "kv_overrides", "chat_template_kwargs",
                                          "clip_model_path", "allow_media_urls", "allow_media_files"} | _NOT_LLAMA)
        if self.kv_overrides:
            fields["kv_overrides"] = dict(_kv_override(item) for item in self.kv_overrides)
        from allama.chat.multimodal_presets import HANDLERS_BY_CHAT_FORMAT

        preset = HANDLERS_BY_CHAT_FORMAT.get(self.chat_format or "")
        if preset is not None:  # llama-cpp-python's names for its multimodal handlers
            fields["chat_format"] = None
        if self.clip_model_path:
            handler = preset or HANDLERS_BY_CHAT_FORMAT["mtmd"]
            fields["chat_handler"] = handler(self.clip_model_path, allow_http=self.allow_media_urls,
                                             allow_files=self.allow_media_files, n_threads=self.n_threads or 4)
        if self.chat_format in _HF_CHAT_FORMATS:
            fields["chat_format"] = None  # the handler below, or hf_tokenizer_config_path's template (model_loading)
        if self.chat_format == "hf-autotokenizer":
            fields["chat_handler"] = _hf_autotokenizer_handler(self.hf_pretrained_model_name_or_path)
        if self.draft_model == "prompt-lookup-decoding":
            from allama.speculative import LlamaPromptLookupDecoding

            fields["draft_model"] = LlamaPromptLookupDecoding(num_pred_tokens=self.draft_model_num_pred_tokens)
        if self.hf_pretrained_model_name_or_path:
            fields["tokenizer"] = _hf_tokenizer(self.hf_pretrained_model_name_or_path)
        return fields


# Settings that are not Llama arguments: used by the server when it loads the model
# (model_loading.py), or accepted and ignored as llama-cpp-python's server ignores them.
_NOT_LLAMA = {"mul_mat_q", "logits_all", "cache", "cache_type", "cache_size", "hf_tokenizer_config_path",
              "hf_pretrained_model_name_or_path", "hf_model_repo_id", "draft_model", "draft_model_num_pred_tokens"}
_HF_CHAT_FORMATS = ("hf-tokenizer-config", "hf-autotokenizer")


def _list_items(value: Any) -> Any:
    """A list from "a,b", or from ["a", "b,c"] (flags given space-separated, items comma-separated)."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [part for item in value for part in (item.split(",") if isinstance(item, str) else [item])
                if part != ""]
    return value


def _hf_tokenizer(name_or_path: str) -> Any:
    from allama.tokenizer import LlamaHFTokenizer

    try:
        return LlamaHFTokenizer.from_pretrained(name_or_path)
    except ImportError as exc:
        raise ImportError("hf_pretrained_model_name_or_path needs the transformers package: "
                          "pip install 'allama[hf]' (or pip install transformers)") from exc


def _hf_autotokenizer_handler(name_or_path: str | None) -> Any:
    if not name_or_path:
        raise ValueError("chat_format hf-autotokenizer needs hf_pretrained_model_name_or_path")
    import allama.chat as chat

    make = getattr(chat, "hf_autotokenizer_to_chat_completion_handler", None)
    if make is None:
        raise ValueError("chat_format hf-autotokenizer is not available in this allama; "
                         "use hf_tokenizer_config_path (a tokenizer_config.json) instead")
    return make(name_or_path)


def _kv_override(item: str) -> tuple[str, bool | int | float | str]:
    key, _, typed = item.partition("=")
    kind, _, value = typed.partition(":")
    if kind == "bool":
        return key, value.lower() in ("1", "true", "yes")
    if kind == "int":
        return key, int(value)
    if kind == "float":
        return key, float(value)
    if kind == "str":
        return key, value
    raise ValueError(f"kv override {item!r}: the type must be bool, int, float or str")


class ServerSettings(BaseSettings):
    """Listening, authentication and per-request limits."""

    model_config = SettingsConfigDict(extra="ignore")

    host: str = Field(default="localhost", description="Listen address.")
    port: int = Field(default=8000, ge=0, le=65535, description="Listen port.")
    ssl_keyfile: str | None = Field(default=None)
    ssl_certfile: str | None = Field(default=None)
    api_key: str | None = Field(default=None, description="Required as `Authorization: Bearer <key>` when set.")
    interrupt_requests: bool = Field(
        default=True, description="Accepted for llama-cpp-python compatibility: requests never wait on each other.")
    disable_ping_events: bool = Field(default=False, description="No keep-alive comments in event streams.")
    ping_interval: float = Field(default=15.0, gt=0, description="Seconds between keep-alive comments.")
    root_path: str = Field(default="", description="ASGI root path, when served behind a proxy prefix.")
    cors_origins: list[str] = Field(default_factory=lambda: ["*"], description="Allowed CORS origins.")
    max_request_bytes: int = Field(default=16 << 20, ge=1, description="Larger request bodies get 413.")
    max_tokens_limit: int | None = Field(default=None, ge=1, description="Largest max_tokens a request may ask for.")
    max_n: int = Field(default=16, ge=1, description="Largest n (choices) a request may ask for.")
    max_prompt_tokens: int | None = Field(default=None, ge=1, description="Longest prompt a request may send.")
    request_timeout: float | None = Field(default=None, gt=0, description="Seconds a request may take in all.")
    shutdown_grace_seconds: float = Field(default=30.0, ge=0, description="On SIGTERM/SIGINT (--drain-timeout): seconds running requests get before the models close.")
    web_ui: bool = Field(default=True, description="Serve the web chat page at / (its files under /static/; "
                         "neither needs the API key: they hold no data).")

    max_loaded_models: int = Field(
        default=1, ge=0, description="Models resident at once when several are configured: as llama-cpp-python, "
        "one by default, swapped in when a request names another (the old one's running requests finish "
        "first); 0 loads them all at start.")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        items = _list_items(value)
        return [v.strip() for v in items if isinstance(v, str) and v.strip()] if isinstance(items, list) else items


class Settings(ServerSettings, ModelSettings):
    """Server settings and one model."""


class ConfigFileSettings(ServerSettings):
    """A config file: server settings and several models, chosen by `model` in requests."""

    models: list[ModelSettings] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_keys(cls, data: Any) -> Any:
        """A misspelt setting is an error naming it (not silently ignored), at the top and per model."""
        if isinstance(data, dict):
            _check_keys(data, cls, "the config")
            for i, model in enumerate(data.get("models") or []):
                if isinstance(model, dict):
                    _check_keys(model, ModelSettings, f"models[{i}]")
        return data

    @classmethod
    def from_file(cls, path: str | Path) -> "ConfigFileSettings":
        text = Path(path).read_text()
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the config must be a mapping with server settings and `models`")
        return cls.model_validate(data)


def _check_keys(data: dict[str, Any], settings: type[BaseSettings], where: str) -> None:
    known = set()
    for name, field in settings.model_fields.items():
        known.add(name)
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            known.update(a for a in alias.choices if isinstance(a, str))
        elif isinstance(alias, str):
            known.add(alias)
    unknown = [key for key in data if key not in known]
    if unknown:
        raise ValueError(f"{where}: unknown setting {unknown[0]!r}"
                         + (f" (and {', '.join(map(repr, unknown[1:]))})" if unknown[1:] else ""))
