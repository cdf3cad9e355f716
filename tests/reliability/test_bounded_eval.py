"""Evaluation stays bounded in memory and time whatever the texts (issue 17 §5).

rouge-score's ROUGE-L fills a len(ref)×len(pred) table of Python ints: one 1 MB line grew it to
14.6 GB. whyrec computes the same scores from a bit-parallel LCS and scores at most
`MAX_TEXT_TOKENS` tokens of a text, saying how many texts it cut.
"""

from __future__ import annotations

import json
import random
import resource
import time
import warnings

import pytest
from cli_contract import whyrec_subprocess

from whyrec.eval.text import (
    MAX_TEXT_TOKENS,
    pepler_text_metrics,
    rouge_score_l,
    standard_text_metrics,
)
from whyrec.utils import WhyrecError

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
pytest.importorskip("sacrebleu")

# Words with suffixes the Porter stemmer strips, capitals, digits and punctuation, so the
# random pairs exercise rouge-score's whole tokenizer, not only the LCS.
_VOCAB = ("the room rooms was were clean cleaning cleaned staff friendly Friendly great GREAT "
          "location located 24 hours, view. views! can't it's (nice) a an and of very really "
          "comfortable comfortably bed beds").split()


def _random_text(rng: random.Random, max_words: int) -> str:
    return " ".join(rng.choice(_VOCAB) for _ in range(rng.randint(0, max_words)))


def _rouge_score_reference(preds: list[str], refs: list[str]) -> list[tuple]:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    return [scorer.score(r, p) for p, r in zip(preds, refs, strict=True)]


def _check_same_as_rouge_score(preds: list[str], refs: list[str]) -> None:
    tokenizer = rouge_scorer.tokenizers.DefaultTokenizer(use_stemmer=True)
    expected = _rouge_score_reference(preds, refs)
    for pred, ref, want in zip(preds, refs, expected, strict=True):
        got = rouge_score_l(tokenizer.tokenize(ref), tokenizer.tokenize(pred))
        assert got == (want["rougeL"].fmeasure, want["rougeL"].precision, want["rougeL"].recall), (pred, ref)
    metrics = standard_text_metrics(preds, refs)
    for key in ("rouge1", "rouge2", "rougeL"):
        mean = 100.0 * sum(s[key].fmeasure for s in expected) / len(preds)
        assert metrics[f"{key}_f"] == pytest.approx(mean, rel=1e-12, abs=1e-12), key
    assert "truncated_texts" not in metrics


def test_linear_rouge_l_equals_rouge_score_on_random_pairs():
    rng = random.Random(17)
    preds = [_random_text(rng, 60) for _ in range(300)]
    refs = [_random_text(rng, 60) for _ in range(300)]
    _check_same_as_rouge_score(preds, refs)


def test_linear_rouge_l_equals_rouge_score_on_real_pairs(shared_data):
    from whyrec.eval.readers import read_texts

    folder = shared_data / "xrec-amazon"
    if not (folder / "tst_pred.pkl").exists():
        pytest.skip(f"{folder}/tst_pred.pkl is absent")
    preds, refs = read_texts(folder / "tst_pred.pkl"), read_texts(folder / "tst_ref.pkl")
    picked = random.Random(0).sample(range(len(preds)), 300)
    _check_same_as_rouge_score([preds[i] for i in picked], [refs[i] for i in picked])


def test_texts_over_the_cap_are_cut_counted_and_warned():
    long_text = " ".join(f"w{i}" for i in range(MAX_TEXT_TOKENS + 500))
    at_cap = " ".join(f"w{i}" for i in range(MAX_TEXT_TOKENS))
    with pytest.warns(UserWarning, match=rf"2 of 6 texts are longer than {MAX_TEXT_TOKENS} tokens"):
        pepler = pepler_text_metrics([long_text, at_cap, "a b"], [long_text, at_cap, "a b"])
    assert (pepler["truncated_texts"], pepler["max_text_tokens"]) == (2, MAX_TEXT_TOKENS)
    # Both sides cut to the same prefix: still a perfect match, scored on the first tokens only.
    assert pepler["rougeL_f"] == pytest.approx(100.0)
    with pytest.warns(UserWarning, match="2 of 6 texts"):
        standard = standard_text_metrics([long_text, at_cap, "a b"], [long_text, at_cap, "a b"])
    assert standard["truncated_texts"] == 2
    # The cut keeps the first tokens: a prediction that differs only after them scores 100.
    tail_differs = long_text + " extra words"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pepler_text_metrics([tail_differs], [long_text], max_tokens=10)["bleu4"] == pytest.approx(100.0)


def test_no_truncation_keys_on_normal_texts():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a normal corpus must not warn
        metrics = pepler_text_metrics(["the room was clean ."], ["the room was clean."])
    assert "truncated_texts" not in metrics


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_token_cap_must_be_a_positive_integer(bad):
    with pytest.raises(WhyrecError, match="max_tokens must be a positive integer"):
        pepler_text_metrics(["a"], ["a"], max_tokens=bad)


# The normal `whyrec evaluate` peaks near 0.6 GB of address space (no torch import); 2 GB
# leaves room for library arenas while rouge-score's table for the lines below would need
# about 8 bytes × 170k × 170k ≈ 230 GB.
_ADDRESS_LIMIT = 2 << 30


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_ADDRESS_LIMIT, _ADDRESS_LIMIT))


def _one_mb_line(seed: int) -> str:
    rng = random.Random(seed)
    words = [f"word{i}" for i in range(5000)]
    return " ".join(rng.choice(words) for _ in range(170_000))[:1_000_000]


def test_one_megabyte_line_evaluates_under_a_memory_limit(tmp_path):
    pred, ref = tmp_path / "p.txt", tmp_path / "r.txt"
    pred.write_text(_one_mb_line(1) + "\nthe room was clean\n")
    ref.write_text(_one_mb_line(2) + "\nthe room was clean\n")
    assert 8 * 170_000**2 > 50 * _ADDRESS_LIMIT  # the quadratic table could never fit
    started = time.monotonic()
    result = whyrec_subprocess(
        ["evaluate", "--predictions", pred, "--references", ref, "--out", tmp_path / "O"],
        timeout=180, preexec_fn=_limit_address_space,
        env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"},
    )
    elapsed = time.monotonic() - started
    assert result.rc == 0, result.err[-3000:]
    assert elapsed < 120, f"took {elapsed:.0f} s"
    assert f"2 of 4 texts are longer than {MAX_TEXT_TOKENS} tokens" in result.err
    metrics = json.loads((tmp_path / "O" / "metrics.json").read_text())
    for family in ("pepler", "standard"):
        assert metrics[family]["truncated_texts"] == 2, family
        assert metrics[family]["max_text_tokens"] == MAX_TEXT_TOKENS
    # Mean of the short pair's exact match (100) and the random long pair's few percent.
    assert 50 < metrics["pepler"]["rougeL_f"] < 60
