"""`--generation.eos_bias`: a constant added to the EOS logit at every step, the soft counterpart of
`min_new_tokens`. The same on whyrec's continuous decoder and HF `generate`, absent (old tokens,
old cache keys) at 0, refused in one line when not finite."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import serve_tiny as T
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
)

from whyrec.config import (
    ConfigError,
    GenerationConfig,
    ModelConfig,
    XRecConfig,
    generation_fingerprint,
)
from whyrec.llm.generate import generate_kwargs, logits_processors
from whyrec.llm.token_choice import choose_tokens, history_blind

torch.set_num_threads(1)
EOS, VOCAB = 2, 40


# ---------------------------------------------------------------- config, keys, CLI


def test_a_non_finite_bias_is_refused():
    assert GenerationConfig(eos_bias=-1.5).eos_bias == -1.5
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ConfigError, match="eos_bias must be a finite number"):
            GenerationConfig(eos_bias=bad)


@pytest.mark.parametrize(("value", "says"), [("nan", "expected a number, got 'nan'"),
                                             (".nan", "eos_bias must be a finite number (got nan)"),
                                             ("1e999", "eos_bias must be a finite number (got inf)")])
def test_the_cli_refuses_a_non_finite_bias_in_one_line(capsys, value, says):
    from whyrec.cli import main

    assert main(["explain", "--run", "no-run", "--user", "u", "--item", "i", "--generation.eos_bias", value]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("whyrec: error:")]
    assert errors == [f"whyrec: error: --generation.eos_bias: {says}"]


def test_cache_keys_change_only_when_the_bias_is_set():
    from whyrec.benchmark_cache import generation_settings
    from whyrec.llm.client import LocalHFClient

    default, biased = GenerationConfig(), GenerationConfig(eos_bias=-1.5)
    assert "eos_bias" not in generation_fingerprint(default)
    assert generation_fingerprint(replace(default, eos_bias=-0.0)) == generation_fingerprint(default)
    assert generation_fingerprint(biased) == {**generation_fingerprint(default), "eos_bias": -1.5}
    assert generation_settings(biased) != generation_settings(default)
    tiny = ModelConfig("tiny-random-llama", device="cpu", dtype="float32")
    assert "eos_bias" not in LocalHFClient.for_generation(tiny, default).cache_params()
    assert LocalHFClient.for_generation(tiny, biased).cache_params()["eos_bias"] == -1.5  # zero-shot honours it


def test_off_by_default_on_both_paths_and_first_when_set():
    tok = type("Tok", (), {"pad_token_id": 0, "eos_token_id": EOS})()
    assert "sequence_bias" not in generate_kwargs(GenerationConfig(), tok)
    assert [type(p) for p in logits_processors(GenerationConfig(), EOS)] == [RepetitionPenaltyLogitsProcessor]
    assert generate_kwargs(GenerationConfig(eos_bias=-2), tok)["sequence_bias"] == {(EOS,): -2.0}
    procs = logits_processors(GenerationConfig(eos_bias=-2), EOS)  # where HF's _get_logits_processor puts it
    assert [type(p) for p in procs] == [SequenceBiasLogitsProcessor, RepetitionPenaltyLogitsProcessor]


def test_pepler_refuses_it_in_one_line():
    from whyrec.methods.base import check_generation
    from whyrec.registry import METHODS
    from whyrec.utils import WhyrecError

    with pytest.raises(WhyrecError, match=r"^--method pepler does not use --generation.eos_bias \(it decodes"):
        check_generation(METHODS.get("pepler"), GenerationConfig(eos_bias=-1.0))


# ---------------------------------------------------------------- the continuous decoder's token choice


def _rows(seed: int):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(7, VOCAB, generator=gen)
    logits[:, EOS] = logits.max(-1).values + torch.tensor([0.3, -0.3] * 4)[:7]  # EOS just first or second
    history = [torch.randint(3, VOCAB, (n,), generator=gen).tolist() for n in (0, 1, 3, 3, 4, 6, 2)]
    return logits.to(torch.bfloat16), history


@pytest.mark.parametrize("bias", [-1.5, 1.0])
def test_all_rows_at_once_give_hf_processors_choice(bias):
    procs = logits_processors(GenerationConfig(repetition_penalty=1.3, eos_bias=bias), EOS)
    assert history_blind(procs)  # a constant bias ignores the history: every row in one pass
    moved = 0
    for seed in range(10):
        logits, history = _rows(seed)
        at_once = choose_tokens(procs, logits, history, do_sample=False)
        grouped = choose_tokens(lambda ids, s: procs(ids, s), logits, history, do_sample=False)  # HF's, by length
        assert torch.equal(at_once, grouped)
        unbiased = choose_tokens(LogitsProcessorList(procs[1:]), logits, history, do_sample=False)
        moved += int((at_once != unbiased).sum())
    assert moved >= 10  # the bias changed choices, so the fast path really applied it


def test_the_bias_alone_and_with_sampling_and_ngram_blocking():
    logits, history = _rows(3)
    alone = logits_processors(GenerationConfig(repetition_penalty=1.0, eos_bias=-5.0), EOS)
    assert not choose_tokens(alone, logits, history, do_sample=False).eq(EOS).any()
    assert choose_tokens(logits_processors(GenerationConfig(repetition_penalty=1.0, eos_bias=5.0), EOS), logits,
                         history, do_sample=False).eq(EOS).all()
    sampled = logits_processors(GenerationConfig(eos_bias=-1.0, do_sample=True, temperature=0.7, top_p=0.9), EOS)
    assert history_blind(sampled)
    torch.manual_seed(5)
    at_once = choose_tokens(sampled, logits, history, do_sample=True)
    torch.manual_seed(5)
    assert torch.equal(at_once, choose_tokens(lambda ids, s: sampled(ids, s), logits, history, do_sample=True))
    assert not history_blind(logits_processors(GenerationConfig(eos_bias=-1.0, no_repeat_ngram_size=2), EOS))


# ---------------------------------------------------------------- XRec: continuous loop vs HF generate


@pytest.fixture(scope="module")
def xrec():
    """A tiny random XRec whose EOS row of the LM head is a scaled copy of a token's some rows emit, so
    greedy rows end early (7, 7, 16, 16, 7, 16 of 16 tokens) where the bias can keep them going."""
    from whyrec.llm.load import load_model
    from whyrec.methods.xrec.model import XRec

    torch.manual_seed(0)
    llm, tok = load_model(ModelConfig("tiny-random-llama", device="cpu", dtype="float32"))
    model = XRec(llm, tok, 8, XRecConfig(n_exps=2, item_noun="movie", dropout=0.0)).eval()
    enc = model.encode([model.prompt(f"Film {k}", "likes animation", "a family film") for k in range(6)])
    vec = 30 * torch.randn(6, 2, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        first = model.generate_ids(enc["input_ids"], enc["attention_mask"], vec[:, 0], vec[:, 1], GEN)
        llm.lm_head.weight[tok.eos_token_id] = 1.05 * llm.lm_head.weight[first[0][6]]

    def decode(gen: GenerationConfig) -> list[list[int]]:
        with torch.no_grad():
            return model.generate_ids(enc["input_ids"], enc["attention_mask"], vec[:, 0], vec[:, 1], gen)

    return decode


GEN = GenerationConfig(max_new_tokens=16, batch_size=3)  # the default repetition penalty 1.1 on


@pytest.mark.parametrize("bias", [0.0, -0.3, -100.0, 1.0])
def test_continuous_loop_and_hf_generate_give_the_same_tokens(xrec, bias):
    gen = replace(GEN, eos_bias=bias)
    assert xrec(gen) == xrec(replace(gen, drop_finished=False))  # whyrec's loop == HF generate (fp32)


def test_a_large_negative_bias_keeps_every_row_going(xrec):
    plain, held = xrec(GEN), xrec(replace(GEN, eos_bias=-100.0))
    assert [len(r) for r in plain] == [7, 7, 16, 16, 7, 16]  # greedy ends three rows early
    assert [len(r) for r in held] == [16] * 6 and EOS not in sum(held, [])
    assert all(h[:len(p) - 1] == p[:-1] for h, p in zip(held, plain))  # the same text up to where it ended
    assert xrec(replace(GEN, eos_bias=0.0)) == plain  # 0: the tokens it always gave
    assert [len(r) for r in xrec(replace(GEN, eos_bias=1.0))] == [1] * 6  # positive: shorter


# ---------------------------------------------------------------- the CLI reaches the decoder


def test_explain_and_benchmark_runs_decode_with_the_bias(tmp_path_factory, tmp_path, monkeypatch, capsys):
    from whyrec.cli import main
    from whyrec.data.dataset import RecDataset
    from whyrec.methods.xrec.model import XRec

    root = T.tiny_run(tmp_path_factory)
    seen: list[float] = []
    real = XRec.generate_ids
    monkeypatch.setattr(XRec, "generate_ids", lambda self, *a: seen.append(a[-1].eos_bias) or real(self, *a))
    pair = RecDataset.load(root / "data").split("test").iloc[0]
    assert main(["explain", "--run", str(root / "explainer"), "--user", str(pair["user"]), "--item",
                 str(pair["item"]), "--device", "cpu", "--generation.eos_bias", "-1.5"]) == 0
    assert seen == [-1.5]

    def bench(*options: str) -> dict:
        seen.clear()
        assert main(["benchmark", "explain", "--data", str(root / "data"), "--out", str(tmp_path / "bench"),
                     "--methods", "none", "--runs", f"tiny={root / 'explainer'}", "--groups", "false",
                     "--max_pairs", "3", "--device", "cpu", "--generation.max_new_tokens", "6", *options]) == 0
        lines = (tmp_path / "bench" / "predictions" / "tiny.jsonl").read_text().splitlines()
        return json.loads(lines[0])

    plain = bench()
    assert seen and "eos_bias" not in json.dumps(plain)
    assert bench() == plain and seen == []  # cached: nothing decoded again
    biased = bench("--generation.eos_bias", "-1.5")
    assert set(seen) == {-1.5} and biased != plain  # re-decoded with the bias, not the greedy rows reused
    assert '"eos_bias": -1.5' in json.dumps(biased)
