"""The one generation path (`whyrec.llm.generate`): GenerationConfig -> HF generate arguments for every method."""

import ast
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from whyrec.config import (
    ConfigError,
    GenerationConfig,
    ModelConfig,
    XRecConfig,
    generation_fingerprint,
)
from whyrec.llm.generate import generate, generate_kwargs, logits_processors, plain_greedy
from whyrec.utils import WhyrecError

SRC = Path(__file__).resolve().parents[2] / "src" / "whyrec"
TINY = ModelConfig(name_or_path="tiny-random-llama", device="cpu", dtype="float32")
TOK = SimpleNamespace(pad_token_id=0, eos_token_id=2)


def test_greedy_kwargs_switch_sampling_off_and_skip_a_zero_minimum():
    kw = generate_kwargs(GenerationConfig(max_new_tokens=7, repetition_penalty=1.0), TOK)
    assert kw == {"max_new_tokens": 7, "do_sample": False, "num_beams": 1, "num_return_sequences": 1,
                  "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "temperature": None, "top_p": None,
                  "top_k": None, "pad_token_id": 0, "eos_token_id": 2}


def test_sampling_kwargs_pass_temperature_and_top_p_and_the_minimum():
    gen = GenerationConfig(do_sample=True, temperature=0.5, top_p=0.8, min_new_tokens=3, num_beams=2,
                           no_repeat_ngram_size=4)
    kw = generate_kwargs(gen, TOK, num_return_sequences=2)
    assert (kw["temperature"], kw["top_p"], kw["min_new_tokens"], kw["num_beams"]) == (0.5, 0.8, 3, 2)
    assert kw["no_repeat_ngram_size"] == 4 and kw["num_return_sequences"] == 2
    assert "top_k" not in kw  # left to the backbone's generation config, as whyrec always sampled


def test_pad_falls_back_to_eos():
    kw = generate_kwargs(GenerationConfig(), SimpleNamespace(pad_token_id=None, eos_token_id=5))
    assert kw["pad_token_id"] == kw["eos_token_id"] == 5


def test_generate_hands_inputs_and_settings_to_the_model():
    seen = {}

    class Model:
        def generate(self, **kw):
            seen.update(kw)
            return "ids"

    assert generate(Model(), GenerationConfig(max_new_tokens=4), TOK, input_ids="x", attention_mask="m") == "ids"
    assert seen["input_ids"] == "x" and seen["attention_mask"] == "m" and seen["max_new_tokens"] == 4


@pytest.mark.parametrize("kw, field", [({"min_new_tokens": 65}, "min_new_tokens"), ({"num_beams": 0}, "num_beams"),
                                       ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
                                       ({"min_new_tokens": -1}, "min_new_tokens")])
def test_new_fields_are_validated(kw, field):
    with pytest.raises(ConfigError) as err:
        GenerationConfig(**kw)
    assert err.value.field == field


def test_fingerprint_leaves_out_new_fields_at_their_defaults():
    old = {k: v for k, v in asdict(GenerationConfig()).items()
           if k not in ("min_new_tokens", "num_beams", "no_repeat_ngram_size", "candidates", "select", "eos_bias")}
    assert generation_fingerprint(GenerationConfig()) == old  # caches keyed before the new fields stay valid
    assert generation_fingerprint(GenerationConfig(num_beams=3))["num_beams"] == 3


def test_plain_greedy_drops_the_penalty_and_refuses_sampling():
    gen = GenerationConfig(max_new_tokens=9, min_new_tokens=2, batch_size=3)
    assert plain_greedy(gen, "RecAlpaca") == replace(gen, repetition_penalty=1.0)
    with pytest.raises(WhyrecError, match="RecAlpaca decodes greedily"):
        plain_greedy(replace(gen, do_sample=True), "RecAlpaca")


def test_loop_processors_block_eos_until_the_minimum():
    procs = logits_processors(GenerationConfig(min_new_tokens=3, repetition_penalty=1.0), eos_token_id=2)
    scores = torch.zeros(1, 5)
    assert procs(torch.tensor([[1, 4]]), scores.clone())[0, 2] == -float("inf")
    assert procs(torch.tensor([[1, 4, 3]]), scores.clone())[0, 2] == 0


def test_no_method_builds_generate_arguments_itself():
    """Every HF generate call with decoding keywords lives in llm/generate.py."""
    decoding = {"max_new_tokens", "min_new_tokens", "do_sample", "num_beams", "repetition_penalty", "temperature",
                "top_p", "top_k", "pad_token_id", "eos_token_id", "generation_config", "no_repeat_ngram_size"}
    offenders = []
    for path in SRC.rglob("*.py"):
        if path == SRC / "llm" / "generate.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "generate"
                    and decoding & {k.arg for k in node.keywords}):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []


# ---- XRec on a tiny random Llama: the drop-finished loop and HF generate read the same settings


@pytest.fixture(scope="module")
def xrec():
    from whyrec.llm.load import load_model
    from whyrec.methods.xrec.model import XRec

    torch.manual_seed(0)
    llm, tok = load_model(TINY)
    model = XRec(llm, tok, 8, XRecConfig(n_exps=2, item_noun="movie", dropout=0.0)).eval()
    enc = model.encode([model.prompt(f"Film {k}", "likes animation", "a family film") for k in range(3)])
    vec = torch.randn(3, 2, 8, generator=torch.Generator().manual_seed(1))
    return model, enc, vec


def test_xrec_loop_matches_hf_generate_with_the_new_settings(xrec):
    model, enc, vec = xrec
    gen = GenerationConfig(max_new_tokens=30, min_new_tokens=5, no_repeat_ngram_size=2, repetition_penalty=1.0)
    loop = model.generate_ids(enc["input_ids"], enc["attention_mask"], vec[:, 0], vec[:, 1], gen)
    hf = model.generate_ids(enc["input_ids"], enc["attention_mask"], vec[:, 0], vec[:, 1],
                            replace(gen, drop_finished=False))
    assert loop == hf
    for row in loop:  # the n-gram block acted (plain greedy repeats itself within 30 tokens here)
        bigrams = list(zip(row, row[1:]))
        assert len(bigrams) == len(set(bigrams))
    plain = model.generate_ids(enc["input_ids"], enc["attention_mask"], vec[:, 0], vec[:, 1],
                               replace(gen, no_repeat_ngram_size=0))
    assert any(len(set(zip(row, row[1:]))) < len(row) - 1 for row in plain)


def test_xrec_beam_search_injects_each_row_its_own_vectors(xrec):
    model, _, _ = xrec
    enc = model.encode([model.prompt("Film 1", "likes animation", "a family film")] * 3)  # rows differ by vectors only
    vec = 30 * torch.randn(3, 2, 8, generator=torch.Generator().manual_seed(1))  # large enough to steer the text
    gen = GenerationConfig(max_new_tokens=6, num_beams=3)
    together = model.generate_ids(enc["input_ids"], enc["attention_mask"], vec[:, 0], vec[:, 1], gen)
    alone = [model.generate_ids(enc["input_ids"][k:k + 1], enc["attention_mask"][k:k + 1], vec[k:k + 1, 0],
                                vec[k:k + 1, 1], gen)[0] for k in range(3)]
    assert together == alone and len({tuple(r) for r in alone}) > 1
