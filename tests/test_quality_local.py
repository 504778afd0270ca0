"""The local scoring backend against the plain computation, and the chat-template rendering.

A tiny random Qwen2 (tests/tiny_models.py) is scored both ways: ``LocalBackend``
(token-budget batches, right padding, hidden states of response positions only, LM head
in chunks) and the naive one, a forward per sequence with full logits. They must agree
to 1e-4 relative, with padding and batches of mixed length in play.
"""

from __future__ import annotations

import asyncio
import random

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from hubtools.errors import UsageError  # noqa: E402
from hubtools.quality.backends.base import ScoreRequest, ScoringError  # noqa: E402
from hubtools.quality.backends.local import LocalBackend, pack  # noqa: E402
from hubtools.quality.render import Renderer  # noqa: E402
from hubtools.records import Attempt, Query  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.tiny_models import make_model

    return make_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen2")


def naive_nll(net, request: ScoreRequest) -> float:
    """The usual peer: one forward, full logits, the response tokens' log-probs summed."""
    import torch

    ids = torch.tensor([request.prompt_ids + request.response_ids])
    with torch.no_grad():
        logp = torch.log_softmax(net(input_ids=ids).logits.double(), dim=-1)[0]
    p = len(request.prompt_ids)
    return -sum(logp[p + j - 1, t].item() for j, t in enumerate(request.response_ids))


def random_requests(vocab: int, n: int, seed: int = 0) -> list[ScoreRequest]:
    rng = random.Random(seed)
    return [
        ScoreRequest(
            [rng.randrange(vocab) for _ in range(rng.randint(1, 12))],
            [rng.randrange(vocab) for _ in range(rng.randint(1, 60))],
            "",
        )
        for _ in range(n)
    ]


def test_local_equals_naive_with_padding_and_mixed_batches(tiny):
    backend = LocalBackend(str(tiny), device="cpu", max_batch_tokens=150, chunk=16)
    requests = random_requests(len(backend.tokenizer), 40)
    lengths = [len(r.prompt_ids) + len(r.response_ids) for r in requests]
    batches = pack(lengths, 150)
    assert len(batches) > 3  # several batches...
    assert any(len({lengths[i] for i in b}) > 1 for b in batches)  # ...padded inside
    got = asyncio.run(backend.score(requests))
    for request, logprobs in zip(requests, got, strict=True):
        want = naive_nll(backend._net, request)
        assert logprobs.tokens == len(request.response_ids)
        assert logprobs.nll_sum == pytest.approx(want, rel=1e-4)


def test_lm_head_never_sees_more_than_a_chunk_nor_prompt_positions(tiny):
    """Memory: the vocabulary projection runs on response positions only, a chunk at a time."""
    backend = LocalBackend(str(tiny), device="cpu", max_batch_tokens=4096, chunk=32)
    requests = random_requests(len(backend.tokenizer), 30, seed=1)
    seen: list[int] = []
    head = backend._net.get_output_embeddings()
    hook = head.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape[0]))
    try:
        backend.score_sync(requests)
    finally:
        hook.remove()
    assert max(seen) <= 32
    assert sum(seen) == sum(len(r.response_ids) for r in requests)


def test_pack_respects_the_budget_and_keeps_every_index():
    lengths = [5, 300, 7, 7, 100, 1, 50, 49, 51]
    batches = pack(lengths, 120)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 120


def test_pack_wastes_little_on_padding():
    """Response lengths spread like real ones (log-normal): padding stays under 15%."""
    rng = random.Random(0)
    lengths = [int(rng.lognormvariate(5.5, 0.6)) + 20 for _ in range(150)]
    batches = pack(lengths, 8192)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert (padded - sum(lengths)) / sum(lengths) < 0.15
    assert len(batches) < len(lengths) / 4  # and still batches, not one pass per sequence


def _pair(messages, think="Two and two.", answer="4", completion_tokens=None):
    query = Query.from_prompt(messages, category="math", source="t")
    attempt = Attempt(query_id=query.query_id, teacher="t", attempt=0, think=think,
                      answer=answer, completion_tokens=completion_tokens)  # fmt: skip
    return query, attempt


def test_render_is_prompt_then_assistant_value_with_counts(tiny):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    renderer = Renderer(tokenizer, "tiny")
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    [own, teacher] = renderer.render(
        [_pair(messages), _pair(messages, completion_tokens=99)]
    )  # fmt: skip
    r = own.request
    assert tokenizer.decode(r.prompt_ids).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(r.response_ids) == (
        "<think>\nTwo and two.\n</think>\n<answer>\n4\n</answer><|im_end|>\n"
    )
    assert r.text == tokenizer.decode(r.prompt_ids + r.response_ids)
    think_n = len(tokenizer("Two and two.", add_special_tokens=False)["input_ids"])
    assert (own.think_tokens, own.answer_tokens) == (think_n, 1)
    assert (own.total_tokens, own.token_source) == (think_n + 1, "tokenizer:tiny")
    assert (teacher.total_tokens, teacher.token_source) == (99, "teacher")


def test_a_template_that_rewrites_the_prompt_is_refused(tiny):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    # Drops the user turn once an assistant turn follows (as some templates do to history).
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'user' and messages[-1]['role'] == "
        "'assistant' %}{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(ScoringError, match="rewrites earlier turns"):
        Renderer(tokenizer, "tiny").render([_pair([{"role": "user", "content": "Hi?"}])])
    tokenizer.chat_template = None
    with pytest.raises(ScoringError, match="no chat template"):
        Renderer(tokenizer, "tiny")


def test_a_folder_that_is_no_model_is_one_usage_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(UsageError, match="cannot load the scoring model"):
        LocalBackend(str(tmp_path), device="cpu")
