"""PEPLER text metrics (Li et al., TOIS 2023): worked examples and the XRec regression target."""

import math
import random
import re
from collections import Counter

import pytest

from whyrec.eval import report
from whyrec.eval.text import (
    corpus_bleu,
    lcs_length,
    pepler_text_metrics,
    postprocess,
    rouge_pepler,
    standard_text_metrics,
    tokenize,
    unique_sentence_ratio,
)
from whyrec.utils import WhyrecError


def toks(*texts):
    return [t.split() for t in texts]


# ---------------------------------------------------------------- postprocess


@pytest.mark.parametrize(
    "text, expected",
    [
        ("It's great, isn't it?", "It 's great , is n't it ?"),
        ("Nice (really)... wow!!", "Nice ( really ) . wow !"),
        ("a:b;c", "a , b . c"),  # ":" -> ",", ";" -> "."
        ("we'd we'll I'm they're we've", "we 'd we 'll I 'm they 're we 've"),
        ("  spaced   out  ", "spaced out"),
        ("", ""),
    ],
)
def test_postprocess_examples(text, expected):
    assert postprocess(text) == expected
    assert tokenize(text) == expected.split()


def _postprocess_plain(text):
    """Every rule applied unconditionally, in PEPLER's order (the definition)."""
    for pattern, repl in [
        ("'s", " 's"),
        ("'m", " 'm"),
        ("'ve", " 've"),
        ("n't", " n't"),
        ("'re", " 're"),
        ("'d", " 'd"),
        ("'ll", " 'll"),
        (r"\(", " ( "),
        (r"\)", " ) "),
        (",+", " , "),
        (":+", " , "),
        (";+", " . "),
        (r"\.+", " . "),
        ("!+", " ! "),
        (r"\?+", " ? "),
        (" +", " "),
    ]:
        text = re.sub(pattern, repl, text)
    return text.strip()


def test_postprocess_skipping_rules_changes_nothing():
    rng = random.Random(0)
    alphabet = list("ant'sdlmvre(),:;.!? ") + ["n't", "'ll", "'ve"]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        assert postprocess(text) == _postprocess_plain(text), text


# ---------------------------------------------------------------- BLEU


def test_bleu1_clipping_and_brevity_penalty():
    # "the" x3 in the hyp is clipped at its 2 occurrences in the ref: p1 = 3/4.
    # c = 4 < r = 6, so BP = exp(1 - 6/4).
    refs, hyps = toks("the cat is on the mat"), toks("the the the cat")
    assert corpus_bleu(refs, hyps, 1) == pytest.approx(75 * math.exp(-0.5))


def test_bleu4_sums_counts_over_the_corpus():
    # pair 1 matches fully; pair 2 has no 3-/4-gram match, so on its own BLEU-4 is 0.
    # Corpus: p1 = 8/9, p2 = 5/7, p3 = 2/5, p4 = 1/3, c = r = 9 -> BP = 1.
    refs, hyps = toks("a b c d", "e f g h i"), toks("a b c d", "e f x h i")
    expected = 100 * (8 / 9 * 5 / 7 * 2 / 5 * 1 / 3) ** 0.25
    assert corpus_bleu(refs, hyps, 4) == pytest.approx(expected)
    assert corpus_bleu(refs, hyps, 4) == pytest.approx(53.94, abs=0.01)
    assert corpus_bleu(refs, hyps, 1) == pytest.approx(100 * 8 / 9)


def test_bleu4_zero_precision_and_smoothing():
    refs, hyps = toks("e f g h i"), toks("e f x h i")
    assert corpus_bleu(refs, hyps, 4) == 0.0  # p3 = 0/3 zeroes the geometric mean
    # Lin & Och add-one: (4+1)/(5+1), (2+1)/(4+1), (0+1)/(3+1), (0+1)/(2+1).
    expected = 100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 3) ** 0.25
    assert corpus_bleu(refs, hyps, 4, smooth=True) == pytest.approx(expected)
    assert expected == pytest.approx(45.18, abs=0.01)


def test_bleu_longer_hypothesis_has_no_penalty_and_empty_is_zero():
    assert corpus_bleu(toks("a b"), toks("a b c d"), 1) == pytest.approx(50.0)
    assert corpus_bleu([[]], [[]], 4) == 0.0
    assert corpus_bleu([["a"]], [[]], 1, smooth=True) == 0.0


def _bleu_reference(refs, hyps, max_order, smooth=False):
    """tensorflow/nmt compute_bleu written out plainly, one reference per hypothesis."""
    matches, possible = [0] * max_order, [0] * max_order
    for ref, hyp in zip(refs, hyps, strict=True):
        for n in range(1, max_order + 1):
            h = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
            r = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
            matches[n - 1] += sum((h & r).values())
            possible[n - 1] += max(len(hyp) - n + 1, 0)
    if smooth:
        p = [(m + 1) / (q + 1) for m, q in zip(matches, possible, strict=True)]
    else:
        p = [m / q if q else 0 for m, q in zip(matches, possible, strict=True)]
    if min(p) == 0:
        return 0.0
    c, r = sum(map(len, hyps)), sum(map(len, refs))
    bp = 1.0 if c / r > 1 else math.exp(1 - r / c)
    return 100 * bp * math.exp(sum(math.log(x) for x in p) / max_order)


def _random_corpus(rng, n, vocab="abcde", max_len=12):
    def sent():
        return [rng.choice(vocab) for _ in range(rng.randint(1, max_len))]

    return [sent() for _ in range(n)], [sent() for _ in range(n)]


@pytest.mark.parametrize("smooth", [False, True])
def test_bleu_matches_plain_reference_on_random_corpora(smooth):
    rng = random.Random(1)
    for _ in range(30):
        refs, hyps = _random_corpus(rng, rng.randint(1, 8))
        for order in (1, 2, 4):
            assert corpus_bleu(refs, hyps, order, smooth) == pytest.approx(
                _bleu_reference(refs, hyps, order, smooth)
            )


# ---------------------------------------------------------------- ROUGE


def test_rouge_n_counts_each_ngram_once():
    # Sets: hyp {the, cat} vs ref {the, cat, sat} -> P = 1, R = 2/3, F = 0.8.
    # Bigrams: {the the, the cat} vs {the cat, cat sat} -> P = R = F = 1/2.
    scores = rouge_pepler(toks("the the the cat"), toks("the cat sat"))
    assert scores["rouge1_p"] == pytest.approx(100.0)
    assert scores["rouge1_r"] == pytest.approx(200 / 3)
    assert scores["rouge1_f"] == pytest.approx(80.0, abs=1e-5)
    assert scores["rouge2_p"] == scores["rouge2_r"] == pytest.approx(50.0)
    assert scores["rouge2_f"] == pytest.approx(50.0, abs=1e-5)


def test_rouge_l_uses_beta_p_over_r():
    # LCS("a b c d", "a c e f g h") = 2: P = 1/2, R = 1/3, beta = 3/2,
    # F = (1 + beta²) R P / (R + beta² P) = 13/35 (plain F1 would be 0.4).
    scores = rouge_pepler(toks("a b c d"), toks("a c e f g h"))
    assert scores["rougeL_p"] == pytest.approx(50.0)
    assert scores["rougeL_r"] == pytest.approx(100 / 3)
    assert scores["rougeL_f"] == pytest.approx(100 * 13 / 35)


def test_rouge_is_a_macro_average_and_empty_scores_zero():
    scores = rouge_pepler(toks("a b", ""), toks("a b", "a b"))
    assert scores["rouge1_f"] == pytest.approx(50.0, abs=1e-5)
    assert scores["rougeL_f"] == pytest.approx(50.0)
    assert set(scores) == {f"rouge{k}_{m}" for k in "12L" for m in "fpr"}


def _lcs_dp(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = (
                table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
            )
    return table[-1][-1]


def test_bit_parallel_lcs_matches_dynamic_programming():
    rng = random.Random(2)
    for _ in range(500):
        a, b = _random_corpus(rng, 1, vocab="abcd", max_len=70)
        assert lcs_length(a[0], b[0]) == _lcs_dp(a[0], b[0])
    assert lcs_length([], ["a"]) == lcs_length(["a"], []) == 0


# ---------------------------------------------------------------- USR and the entry point


def test_unique_sentence_ratio_on_pepler_tokens_and_raw_split():
    assert unique_sentence_ratio(toks("good room", "good room", "Good room")) == (2 / 3, 2)
    metrics = pepler_text_metrics(["great view.", "great view ."], ["x", "y"])
    assert (metrics["usr"], metrics["usn"]) == (0.5, 1)  # same PEPLER tokens
    assert metrics["usr_raw"] == 1.0  # "view." and "view" differ on a raw split (XRec's USR)


def test_pepler_metrics_keys_and_perfect_match():
    texts = ["the room was clean.", "great location, friendly staff!"]
    metrics = pepler_text_metrics(texts, texts)
    expected_keys = {"bleu1", "bleu4", "usr", "usn", "usr_raw"} | {
        f"rouge{k}_{m}" for k in "12L" for m in "fpr"
    }
    assert set(metrics) == expected_keys
    for key in expected_keys - {"usr", "usn", "usr_raw"}:
        assert metrics[key] == pytest.approx(100.0, abs=1e-5), key


def test_references_are_postprocessed_like_predictions():
    # "clean." vs "clean ." only match once both sides go through postprocess.
    metrics = pepler_text_metrics(["the room was clean ."], ["the room was clean."])
    assert metrics["bleu4"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    "preds, refs, message",
    [
        (
            ["a", "b"],
            ["a"],
            "predictions has 2 rows but references has 1; they must be paired line by line",
        ),
        ([], [], "empty"),
        (["a", None], ["a", "b"], "predictions row 1 is NoneType"),
        (["a", "b"], ["a", 3.0], "references row 1 is float"),
    ],
)
def test_input_validation(preds, refs, message):
    with pytest.raises(WhyrecError, match=re.escape(message)):
        pepler_text_metrics(preds, refs)


# ---------------------------------------------------------------- standard metrics


def test_standard_metrics_on_identical_and_disjoint_texts():
    pytest.importorskip("sacrebleu")
    pytest.importorskip("rouge_score")
    same = standard_text_metrics(["the rooms were clean"], ["the rooms were clean"])
    assert same == pytest.approx(
        {"sacrebleu_bleu": 100.0, "rouge1_f": 100.0, "rouge2_f": 100.0, "rougeL_f": 100.0}
    )
    disjoint = standard_text_metrics(["a b c d"], ["e f g h"])
    assert disjoint["rouge1_f"] == 0.0
    # rouge-score stems: "rooms"/"room" match there but not under PEPLER's definition.
    stemmed = standard_text_metrics(["rooms"], ["room"])
    assert stemmed["rouge1_f"] == pytest.approx(100.0)
    assert pepler_text_metrics(["rooms"], ["room"])["rouge1_f"] == 0.0


def test_standard_metrics_without_the_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "sacrebleu", None)
    with pytest.raises(WhyrecError, match=re.escape("pip install 'whyrec[eval]'")):
        standard_text_metrics(["a"], ["a"])


def test_evaluate_texts_skips_standard_when_not_installed(monkeypatch):
    monkeypatch.setattr(report, "_standard_available", lambda: False)
    metrics = report.evaluate_texts(["a b"], ["a b"])
    assert set(metrics) == {"pepler", "standard", "n"}
    assert metrics["standard"] == {"skipped": "pip install 'whyrec[eval]'"}
    assert metrics["n"] == 1
    text = report.markdown_report(metrics, "t")
    assert "Not computed" in text and "BLEU-4" in text


# ---------------------------------------------------------------- acceptance on XRec's outputs


def test_xrec_amazon_predictions_match_pepler_numbers(shared_data):
    """METHODS.md §3.8: XRec's shipped amazon predictions under PEPLER's definitions."""
    from whyrec.eval.readers import read_texts

    folder = shared_data / "xrec-amazon"
    if not (folder / "tst_pred.pkl").exists():
        pytest.skip(f"{folder}/tst_pred.pkl is absent")
    preds, refs = read_texts(folder / "tst_pred.pkl"), read_texts(folder / "tst_ref.pkl")
    assert len(preds) == len(refs) == 3000
    m = pepler_text_metrics(preds, refs)
    got = {k: round(m[k], 2) for k in ("bleu1", "bleu4", "rouge1_f", "rouge2_f", "rougeL_f")}
    assert got == pytest.approx(
        {"bleu1": 41.23, "bleu4": 15.90, "rouge1_f": 41.66, "rouge2_f": 19.01, "rougeL_f": 33.53},
        abs=0.01,
    )
    assert m["usr"] == pytest.approx(1.0, abs=1e-4) and m["usn"] == 3000
