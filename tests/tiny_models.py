"""Tiny, random, local models and tokenizers for tests: no hub, no download.

The tokenizer is a byte-level BPE trained on the fly with a Qwen-style chat
template (`<|im_start|>role ... <|im_end|>`); the model is a two-layer random
Qwen2 sized to that vocabulary. Both load with the `Auto*` classes from a
directory, exactly like a downloaded checkpoint.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
CORPUS = [
    "What is 2 + 3? The final answer is 5.",
    "Let me think step by step about the problem and check the arithmetic carefully.",
    "def add(a, b):\n    return a + b\n",
    "The quick brown fox jumps over the lazy dog. Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 391.",
    "You are a helpful assistant. Answer in English, clearly and briefly.",
] * 20


def make_tokenizer(path: Path, vocab_size: int = 512, corpus: list[str] | None = None) -> Path:
    """A byte-level BPE with the chat template; ``corpus`` (default: a few lines) trains it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(corpus or CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        bos_token=None, unk_token=None,
    )  # fmt: skip
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    return Path(path)


def make_model(
    path: Path, seed: int = 0, vocab_size: int = 512, corpus: list[str] | None = None
) -> Path:
    """A random two-layer Qwen2 with the tiny tokenizer, saved as a local checkpoint."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    make_tokenizer(path, vocab_size, corpus)
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )  # fmt: skip
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(path)
    return Path(path)
