"""Batch-independent sampling (`whyrec.llm.row_sampling`) and the batched grounding-aware decoding
built on it: a pair's sampled candidates do not depend on how the pairs are chunked."""

from dataclasses import replace

import pytest
import torch

from whyrec.config import GenerationConfig
from whyrec.llm.row_sampling import RowSampler, active_sampler, row_seed, seeded_rows


def _draws(sampler, history, scores):
    out = sampler(history, scores)
    assert bool((torch.isfinite(out).sum(-1) == 1).all())  # exactly one token left per row
    return out.argmax(-1).tolist()


def test_a_rows_draw_depends_on_its_own_scores_and_history_only():
    torch.manual_seed(0)
    scores, history = torch.randn(6, 50), torch.randint(50, (6, 3))
    sampler = RowSampler(1, temperature=0.7, top_p=0.9)
    together = _draws(sampler, history, scores)
    alone = [_draws(sampler, history[r:r + 1], scores[r:r + 1])[0] for r in range(6)]
    reversed_ = _draws(sampler, history.flip(0), scores.flip(0))[::-1]
    assert together == alone == reversed_
    torch.rand(100)  # the global RNG is not the source
    assert _draws(sampler, history, scores) == together


def test_streams_and_histories_change_the_draw_and_prompts_are_skipped():
    scores = torch.zeros(200, 1000)  # uniform: the draw is the generator's alone
    empty = torch.zeros(200, 0, dtype=torch.long)
    first, second = _draws(RowSampler(1, 1.0, 1.0), empty, scores), _draws(RowSampler(2, 1.0, 1.0), empty, scores)
    assert len(set(first)) == 1 and first[0] != second[0]  # same history: same draw; new stream: new draw
    histories = torch.arange(200)[:, None]
    assert len(set(_draws(RowSampler(1, 1.0, 1.0), histories, scores))) > 150
    prompt = torch.full((200, 4), 7)
    with_prompt = torch.cat([prompt, histories], 1)
    assert _draws(RowSampler(1, 1.0, 1.0, skip=4), with_prompt, scores) == \
        _draws(RowSampler(1, 1.0, 1.0), histories, scores)
    assert row_seed(1, [5]) != row_seed(1, [5, 0]) and row_seed(1, [5]) == row_seed(1, [5])


def test_draws_follow_the_top_p_distribution():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    scores = probs.log().expand(4000, 4)
    histories = torch.arange(4000)[:, None]
    counts = torch.bincount(torch.tensor(_draws(RowSampler(3, 1.0, 0.8), histories, scores)), minlength=4)
    assert counts[2:].sum() == 0  # outside the 0.8 nucleus: never
    assert abs(counts[0] / 4000 - 0.5 / 0.8) < 0.03 and abs(counts[1] / 4000 - 0.3 / 0.8) < 0.03


def test_the_sampler_is_active_only_inside_seeded_rows():
    assert active_sampler(0.7, 0.9) is None
    with seeded_rows(4):
        assert active_sampler(0.7, 0.9).stream == 4
    assert active_sampler(0.7, 0.9) is None


# ---------------------------------------------------------------- real decoders (tests/serve_tiny.py)


def _sampled(run, pairs, gen, stream):
    run.model.gen = replace(gen, do_sample=True)
    with torch.random.fork_rng(), seeded_rows(stream):
        torch.manual_seed(stream * 7919 + gen.batch_size)  # a different global stream per call
        return run.model.explain(pairs)


def _pairs(run, n):
    from whyrec.methods.catalog import Pair

    users, items = run.catalog.users, run.catalog.items
    return [Pair(users[k % len(users)], items[(3 * k) % len(items)]) for k in range(n)]


@pytest.mark.parametrize("method", ["xrec", "gavamoe"])
def test_sampled_candidates_do_not_depend_on_chunking(method, tmp_path_factory):
    import serve_tiny as T

    from whyrec.runs import load_run

    folder = T.tiny_run(tmp_path_factory) if method == "xrec" else T.tiny_gavamoe(tmp_path_factory)
    run = load_run(folder, device="cpu")
    pairs = _pairs(run, 5)
    gen = GenerationConfig(max_new_tokens=6, temperature=1.0, top_p=1.0)
    runs_ = {b: [_sampled(run, pairs, replace(gen, batch_size=b), k) for k in (1, 2)] for b in (1, 2, 5)}
    if method == "xrec":  # HF generate instead of the continuous loop
        runs_["hf"] = [_sampled(run, pairs, replace(gen, batch_size=3, drop_finished=False), k) for k in (1, 2)]
    first = runs_[1]
    assert all(texts == first for texts in runs_.values()), runs_
    assert first[0] != first[1]  # the two streams are two different candidates
    greedy = replace(gen, batch_size=5)
    run.model.gen = greedy
    assert run.model.explain(pairs) != first[0]  # sampled, not greedy


def test_run_candidates_are_the_same_in_any_batch_and_never_hide_a_false_claim(tmp_path_factory, capsys):
    import serve_tiny as T

    from whyrec.eval.grounding import explanation_claims
    from whyrec.runs import load_run

    root = T.tiny_run(tmp_path_factory)
    run = load_run(root, device="cpu")
    run.data = str(root / "data")
    pairs = _pairs(run, 6)
    users, items = [p.user for p in pairs], [p.item for p in pairs]
    gen = GenerationConfig(max_new_tokens=8, candidates=3)
    big = run.explain_many(users, items, replace(gen, batch_size=6))
    chosen = [c.candidate for c in run.last_choices]
    assert run.explain_many(users, items, replace(gen, batch_size=1)) == big
    assert [c.candidate for c in run.last_choices] == chosen
    assert run.explain(users[2], items[2], gen) == big[2]
    cat = run._catalogue
    for text, choice, user, item in zip(big, run.last_choices, users, items):
        false = [c for c in explanation_claims(cat, text, user, item) if not c[2]]
        assert not false or choice.kept_false  # a false claim left in the text is always listed
    capsys.readouterr()
