"""Tiny Hugging Face tokenizers trained on a few sentences, saved with save_pretrained.

Two kinds, as real models ship them: byte-level BPE (GPT-2, Llama 3) and SentencePiece-
style BPE with byte fallback (Llama 2, Mistral: '▁' for spaces, <0xNN> tokens for
characters outside the vocabulary, and a decoder that strips the first space). Both are
small enough that most non-ASCII characters are split over several tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

SENTENCES = [
    "Hello world, the quick brown fox jumps over the lazy dog.",
    "Llamas eat grass in the Andes; alpacas do too.",
    "héllo wörld, ça va? naïve café",
    "Streaming text arrives one token at a time.",
]
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]


def build_byte_level_bpe(directory: Path) -> Path:
    """A GPT-2-style byte-level BPE tokenizer (no BOS added) saved in `directory`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=330, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(SENTENCES, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(directory)
    return directory


def build_sentencepiece_bpe(directory: Path) -> Path:
    """A Llama-2-style tokenizer (metaspace, byte fallback, BOS added) saved in `directory`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trained = Tokenizer(models.BPE(unk_token="<unk>"))
    trained.normalizer = normalizer
    trained.train_from_iterator(SENTENCES, trainers.BpeTrainer(vocab_size=150, special_tokens=SPECIAL_TOKENS))
    learned = json.loads(trained.to_str())["model"]
    # The byte tokens come right after the special ones, as in Llama 2's vocabulary.
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for token, _ in sorted(learned["vocab"].items(), key=lambda item: item[1]):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    tokenizer.normalizer = normalizer
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(directory)
    return directory


def build_word_level(directory: Path, vocab: dict[str, int]) -> Path:
    """A whitespace word-level tokenizer with the given ids (which may be anything)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>").save_pretrained(directory)
    return directory
