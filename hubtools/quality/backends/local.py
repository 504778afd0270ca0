"""Log-probs from a transformers model in this process (a Hub id, a folder or a GGUF file).

Memory is what makes this fast or impossible, so: ``torch.inference_mode``; bfloat16 on
CUDA (float32 on CPU, where bf16 matmuls are slow); sequences sorted by length and
packed into batches of at most ``max_batch_tokens`` padded tokens, padded on the right
(so padding costs compute but never changes a real token's output: a causal model's
token attends only to the real tokens before it, and the padding's outputs are never
read; hence no attention mask either, which lets SDPA take its causal fast path, flash
attention on CUDA, instead of materialising a batch x length x length mask); and
no full-vocabulary logits: the decoder's hidden states are taken, only the positions
that predict a response token are kept, and the LM head runs over them ``chunk``
positions at a time with a logsumexp per chunk. Peak extra memory is ``chunk x vocab``
floats whatever the batch or sequence length. The torch work runs in a worker thread so
the stage's event loop stays free.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

from hubtools.errors import UsageError
from hubtools.quality.backends.base import LogProbs, ScoreRequest, ScoringError


class LocalBackend:
    name = "local"

    def __init__(
        self, model: str, *, gguf_file: str | None = None, device: str = "auto",
        dtype: str = "auto", max_batch_tokens: int = 16384, chunk: int = 1024,
    ) -> None:  # fmt: skip
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise UsageError("device cuda asked for, but torch sees no CUDA device")
        if dtype == "auto":
            dtype = "bfloat16" if device == "cuda" else "float32"
        self.device, self.dtype = torch.device(device), getattr(torch, dtype)
        self.max_batch_tokens, self.chunk = max_batch_tokens, chunk
        self.model = f"{model}/{gguf_file}" if gguf_file else model  # recorded as the scorer
        self._net, self.tokenizer = _load(model, gguf_file, self.dtype, self.device)
        self._pad = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id or 0

    async def score(self, requests: list[ScoreRequest]) -> list[LogProbs]:
        return await asyncio.to_thread(self.score_sync, requests)

    async def aclose(self) -> None:
        self._net = None

    def score_sync(self, requests: list[ScoreRequest]) -> list[LogProbs]:
        """Every request's response NLL, computed in token-budget batches by length."""
        for r in requests:
            if r.response_ids and not r.prompt_ids:
                raise ScoringError("a response needs a prompt before it (the first token)")
        out: list[LogProbs | None] = [None] * len(requests)
        for batch in pack([len(r.prompt_ids) + len(r.response_ids) for r in requests],
                          self.max_batch_tokens):  # fmt: skip
            sums = self._batch([requests[i] for i in batch])
            for i, nll in zip(batch, sums, strict=True):
                out[i] = LogProbs(nll, len(requests[i].response_ids))
        return out  # type: ignore[return-value]

    def _batch(self, requests: list[ScoreRequest]) -> list[float]:
        import torch

        seqs = [r.prompt_ids + r.response_ids for r in requests]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self._pad, dtype=torch.long)
        rows, cols = [], []
        for b, (r, s) in enumerate(zip(requests, seqs, strict=True)):
            ids[b, : len(s)] = torch.tensor(s)
            start = len(r.prompt_ids) - 1  # position p-1 predicts the first response token
            cols.extend(range(start, start + len(r.response_ids)))
            rows.extend([b] * len(r.response_ids))
        nll = torch.zeros(len(seqs), dtype=torch.float64)
        if not rows:
            return nll.tolist()
        with torch.inference_mode():
            ids = ids.to(self.device)
            hidden = _decoder(self._net)(input_ids=ids).last_hidden_state  # causal: see above
            rows_t = torch.tensor(rows, device=self.device)
            cols_t = torch.tensor(cols, device=self.device)
            picked = hidden[rows_t, cols_t]  # only the positions that predict response tokens
            del hidden
            targets = ids[rows_t, cols_t + 1]
            for lo in range(0, len(rows), self.chunk):
                logits = self._logits(picked[lo : lo + self.chunk]).float()
                token = logits.gather(1, targets[lo : lo + self.chunk, None])[:, 0]
                loss = (torch.logsumexp(logits, dim=-1) - token).double().cpu()
                nll.index_add_(0, rows_t[lo : lo + self.chunk].cpu(), loss)
        return nll.tolist()

    def _logits(self, hidden: Any) -> Any:
        """The LM head, with the output scaling some architectures apply after it."""
        logits = self._net.get_output_embeddings()(hidden)
        config = self._net.config
        if (scale := getattr(self._net, "logit_scale", None)) is not None:
            logits = logits * scale  # Cohere
        if cap := getattr(config, "final_logit_softcapping", None):
            logits = (logits / cap).tanh() * cap  # Gemma 2
        return logits


def pack(lengths: list[int], budget: int, slack: float = 0.1) -> list[list[int]]:
    """Indices in batches by ascending length, each ``count x longest <= budget`` (a longer
    sequence goes alone). A batch already holding a quarter of the budget is also closed
    when the next sequence would make more than ``slack`` of it padding: a few more
    forward passes cost less than computing on padding (CPU time is per padded token)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        n, longest = len(current) + 1, lengths[i]
        if current and (
            n * longest > budget
            or (
                n * longest - real - longest > slack * n * longest
                and len(current) * lengths[current[-1]] >= budget // 4
            )
        ):
            batches.append(current)
            current, real = [], 0
        current.append(i)
        real += longest
    if current:
        batches.append(current)
    return batches


def _decoder(net: Any) -> Any:
    """The transformer under the LM head: hidden states without the vocabulary projection."""
    decoder = net.get_decoder() if hasattr(net, "get_decoder") else None
    if decoder is None or decoder is net:
        decoder = getattr(net, net.base_model_prefix, None)
    if decoder is None:
        raise ScoringError(f"cannot find the decoder under {type(net).__name__}'s LM head")
    return decoder


def _load(model: str, gguf_file: str | None, dtype: Any, device: Any) -> tuple[Any, Any]:
    """Model and tokenizer, or one UsageError line saying why not (before any scoring)."""
    from huggingface_hub.utils import logging as hub_logging
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()  # GGUF dequantisation and config notes are not errors
    logging.disable_progress_bar()  # the stage shows one bar: scoring's
    hub_logging.set_verbosity_error()  # offline retries: the one error line says it
    where = f"{model} (gguf_file {gguf_file})" if gguf_file else model
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, **extra)
        if device.type == "cuda" and importlib.util.find_spec("accelerate") is not None:
            extra["device_map"] = str(device)  # straight to the GPU: no CPU copy of a 32B model
        net = AutoModelForCausalLM.from_pretrained(model, dtype=dtype, **extra)
    except Exception as err:  # OSError (not found, offline), ValueError (not a causal LM)
        reason = " ".join(str(err).split())[:300]
        raise UsageError(f"cannot load the scoring model {where}: {reason}") from None
    net.to(device).eval()
    return net, tokenizer
