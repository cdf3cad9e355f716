"""RecAlpaca (METHODS §6): LoRA training through the HF Trainer, resume, inference, evaluation."""

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from whyrec.config import GenerationConfig, LoraConfig, ModelConfig
from whyrec.eval.topk import evaluate_topk, load_recalpaca_json
from whyrec.llm.hf_resume import last_complete_checkpoint
from whyrec.llm.load import load_model
from whyrec.methods.recalpaca import model as recalpaca_infer
from whyrec.methods.recalpaca.alpaca import IGNORE_INDEX, render_example
from whyrec.methods.recalpaca.config import RecAlpacaConfig
from whyrec.methods.recalpaca.model import (
    RecAlpaca,
    evaluate_recalpaca,
    load_recalpaca,
    pick_recommendations,
)
from whyrec.methods.recalpaca.train import (
    PadCollator,
    load_alpaca_records,
    tokenize_records,
    train_recalpaca,
)
from whyrec.utils import WhyrecError

TINY = ModelConfig("tiny-random-llama", device="cpu")
CANDIDATES = ["Fargo", "Brazil", "Star Wars", "The Godfather: Part II", "Scream", "Aliens", "Contact"]


def _records(n: int = 8) -> list[dict]:
    return [{"instruction": "Recommend one movie.", "input": f"Liked: film {i}",
             "output": f"1. {CANDIDATES[i % 2]} - a dark comedy."} for i in range(n)]


def _write(tmp_path, records, name="train.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return str(path)


def _tiny_cfg(**kw) -> RecAlpacaConfig:
    # The tiny model's final RMSNorm and small random lm_head cap its logits near uniform, so
    # LoRA on q/k/v/o alone cannot lower the loss much (5.61 -> 5.36 and flat); adding lm_head
    # to the targets lets a few steps show real learning.
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "lm_head"]
    lora = LoraConfig(enabled=True, r=16, alpha=16, target_modules=targets)
    base = dict(batch_size=4, micro_batch_size=2, lr=1e-2, warmup_steps=0, logging_steps=1, save_steps=100,
                seed=0, lora=lora)
    return RecAlpacaConfig(**{**base, **kw})


def _batch_loss(model, batch) -> float:
    model.eval()
    with torch.no_grad():
        return model(**batch).loss.item()


def test_training_lowers_loss_and_adapter_reloads(tmp_path, monkeypatch, capsys):
    from whyrec.methods.recalpaca import train as recalpaca

    records = _records()
    base, tok = load_model(TINY)
    rows, _ = tokenize_records(tok, records, RecAlpacaConfig())
    batch = PadCollator(tok.pad_token_id)(rows)
    loss_before = _batch_loss(base, batch)

    seen = {}
    real_save = recalpaca._save_run

    def save_and_record(trainer, *args):  # logits of the in-memory model, before it is saved
        seen["logits"] = trainer.model.eval()(**batch).logits.detach().clone()
        real_save(trainer, *args)

    monkeypatch.setattr(recalpaca, "_save_run", save_and_record)
    log = train_recalpaca(_write(tmp_path, records), str(tmp_path / "run"), TINY, _tiny_cfg(max_steps=8, val_set_size=2))

    run = tmp_path / "run"
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md", "config.json",
                 "train_log.json", "run_config.json"):
        assert (run / name).is_file(), name
    assert not (run / ".adapter.tmp").exists()
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "recalpaca" and config["base_model"]["name_or_path"] == "tiny-random-llama"
    adapter_cfg = json.loads((run / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == "tiny-random-llama"
    assert log["steps"] == 8 and log["last_loss"] < log["first_loss"]
    assert log["train_examples"] == 6 and log["val_examples"] == 2 and log["eval_loss"] is not None
    assert log["rows_per_step"] == 4  # batch 4 = micro-batch 2 x 2 accumulated, one process
    said = capsys.readouterr().err
    assert "recalpaca: 6 examples, 4 a step (2 a micro-batch x 2 accumulated x 1 processes), lr 0.01" in said

    reloaded = load_recalpaca(run, device="cpu").model
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, seen["logits"], atol=1e-5)
    assert _batch_loss(reloaded, batch) < loss_before - 1.0


def test_collator_masks_prompt_and_padding():
    _, tok = load_model(TINY)
    records = _records(2)
    records[1]["output"] += " Much longer answer here."
    rows, dropped = tokenize_records(tok, records, RecAlpacaConfig())
    assert dropped == 0
    batch = PadCollator(tok.pad_token_id)(rows)
    for b, rec in enumerate(records):
        prompt, response = render_example(rec)
        n_prompt = len(tok(prompt)["input_ids"])
        n = len(rows[b]["input_ids"])
        assert (batch["labels"][b, :n_prompt] == IGNORE_INDEX).all()
        assert torch.equal(batch["labels"][b, n_prompt:n], batch["input_ids"][b, n_prompt:n])
        assert (batch["labels"][b, n:] == IGNORE_INDEX).all() and (batch["attention_mask"][b, n:] == 0).all()
        assert tok.decode(batch["input_ids"][b, n_prompt:n - 1]) == response  # then EOS
    assert (batch["attention_mask"][0] == 0).any()  # the shorter row was padded

    # Examples whose response is cut away entirely carry no loss and are dropped.
    _, dropped = tokenize_records(tok, records, RecAlpacaConfig(cutoff_len=20))
    assert dropped == 2


def test_resume_after_interruption(tmp_path):
    data, out = _write(tmp_path, _records()), tmp_path / "run"
    first = train_recalpaca(data, str(out), TINY, _tiny_cfg(max_steps=2))
    assert first["steps"] == 2 and first["resumed_from"] is None
    # A kill during a save leaves a newest checkpoint without trainer_state.json: skip it.
    (out / "checkpoints" / "checkpoint-9").mkdir()
    assert last_complete_checkpoint(out / "checkpoints").name == "checkpoint-2"
    (out / "checkpoints" / "checkpoint-9").rmdir()

    # The time budget stops the next run after one step, with a checkpoint.
    timed = train_recalpaca(data, str(out), TINY, _tiny_cfg(max_steps=50, max_minutes=1e-9))
    assert timed["resumed_from"] == "checkpoint-2" and timed["steps"] == 3
    # another budget continues the run under a schedule over the new one: the log says so
    assert timed["budget_changed"] == {"from": 2, "to": 50, "at_step": 2} and "budget_changed" not in first
    assert (out / "checkpoints" / "checkpoint-3" / "trainer_state.json").is_file()

    last = train_recalpaca(data, str(out), TINY, _tiny_cfg(max_steps=5))
    assert last["resumed_from"] == "checkpoint-3" and last["steps"] == 5
    assert last["budget_changed"] == {"from": 50, "to": 5, "at_step": 3}
    assert json.loads((out / "train_log.json").read_text())["steps"] == 5
    adapter = load_file(str(out / "adapter_model.safetensors"))

    # Killed after the final checkpoint but before the outputs: the rerun trains no step past the
    # plan (5 steps end mid-epoch, where the Trainer alone would take a 6th) and rewrites the same
    # weights; the logged run loss still covers all five steps.
    again = train_recalpaca(data, str(out), TINY, _tiny_cfg(max_steps=5))
    assert again["resumed_from"] == "checkpoint-5" and again["steps"] == 5 and "budget_changed" not in again
    assert again["train_loss"] == pytest.approx(last["train_loss"]) and again["losses"] == last["losses"]
    for key, value in load_file(str(out / "adapter_model.safetensors")).items():
        assert torch.equal(value, adapter[key]), key


def test_config_and_record_errors(tmp_path):
    with pytest.raises(WhyrecError, match="multiple"):
        RecAlpacaConfig(batch_size=10, micro_batch_size=4)
    jsonl = tmp_path / "instructions.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in _records(3)))
    assert len(load_alpaca_records([str(jsonl), _write(tmp_path, _records(2))])) == 5
    assert len(load_alpaca_records(str(tmp_path))) == 3  # a `whyrec data instructions` folder
    with pytest.raises(WhyrecError, match="record 0"):
        load_alpaca_records(_write(tmp_path, [{"instruction": "x"}], "bad.json"))


def test_recommend_keeps_candidates_only_and_fills_up(monkeypatch):
    text = ('Here are my picks:\n\n1. "Fargo": a dark comedy by the Coens.\n'
            "2. Titanic (1997) - not a candidate.\n"
            "3. Usual Suspects, The - not a candidate either.\n"
            "4. The Godfather: Part II - a sequel he will love.\n"
            "5. Fargo (1996) - again.\n"
            "6. star wars\n")
    model = RecAlpaca(model=None, tokenizer=None)
    monkeypatch.setattr(model, "generate", lambda prompts, gen, **kw: [text])
    recs = model.recommend("Pick 5.", "Some profile.", CANDIDATES, k=5)
    assert [r["title"] for r in recs] == ["Fargo", "The Godfather: Part II", "Star Wars", "Brazil", "Scream"]
    assert [r["from_model"] for r in recs] == [True, True, True, False, False]
    assert recs[0]["reason"] == "a dark comedy by the Coens."
    assert recs[1]["reason"] == "a sequel he will love."
    assert recs[2]["reason"] is None and recs[3]["reason"] is None
    assert len(pick_recommendations("nothing useful", CANDIDATES[:3], k=5)) == 3  # never invents titles


def test_batched_generation_matches_one_by_one():
    model, tok = load_model(TINY)
    rec = RecAlpaca(model, tok)
    prompts = [("Pick one.", "short"), ("Pick one movie for a user who liked many long films.", "")]
    together = rec.generate(prompts, GenerationConfig(max_new_tokens=6, batch_size=2, repetition_penalty=1.0))
    assert together == [rec.generate([p], GenerationConfig(max_new_tokens=6, batch_size=1, repetition_penalty=1.0))[0]
                        for p in prompts]


def test_evaluate_recalpaca_writes_metrics_and_resumes(shared_data, tmp_path, monkeypatch):
    src = shared_data / "recalpaca-ml100k" / "ML100kEvaluationRecAlpaca.json"
    records = json.loads(src.read_text())[:3]
    test_json = _write(tmp_path, records, "test.json")
    answers = {r["input"]: r["output2"] for r in records}

    class Fake:  # answers each prompt with the original model's evaluated text
        calls = 0

        def generate(self, prompts, gen, **kw):
            Fake.calls += len(prompts)
            return [answers[inp] for _, inp in prompts]

    monkeypatch.setattr(recalpaca_infer, "load_recalpaca", lambda *a, **kw: Fake())
    out = tmp_path / "eval"
    metrics = evaluate_recalpaca("some/run", test_json, out, gen=replace(recalpaca_infer.GENERATION, batch_size=2))
    saved = json.loads((out / "metrics.json").read_text())
    texts, cands, truth = load_recalpaca_json(test_json, "output2")
    for parser in ("recalpaca", "robust"):
        expected, _ = evaluate_topk(texts, cands, truth, parser=parser)
        assert saved[parser] == pytest.approx(expected) and metrics[parser] == saved[parser]
    assert saved["n_users"] == 3 and Fake.calls == 3
    assert len((out / "generations.jsonl").read_text().splitlines()) == 4  # the key line + 3 users

    # Rerun after a kill that lost the last user: only that user is generated again.
    lines = (out / "generations.jsonl").read_text().splitlines()
    (out / "generations.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])
    evaluate_recalpaca("some/run", test_json, out, gen=replace(recalpaca_infer.GENERATION, batch_size=2))
    assert Fake.calls == 4
    assert json.loads((out / "metrics.json").read_text()) == saved
