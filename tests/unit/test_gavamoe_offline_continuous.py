"""GaVaMoE's offline explain (evaluate, benchmark explain) through the continuous decoder: rows of
different clusters share a refilled batch and decode to the text HF generate gives each alone."""

from dataclasses import replace

import pandas as pd
import pytest
import torch
from test_gavamoe import FakeVAE, build
from test_gavamoe_stream import PAIRS, TITLES, _new_ids, _perturb_experts

from whyrec.config import GenerationConfig
from whyrec.data import schema as S
from whyrec.llm.row_sampling import seeded_rows
from whyrec.methods.gavamoe.artifact import GaVaMoEExplainer
from whyrec.utils import WhyrecError

torch.set_num_threads(1)
USERS, ITEMS = [u for u, _ in PAIRS], [i for _, i in PAIRS]


@pytest.fixture(scope="module")
def expl():
    module = build()
    _perturb_experts(module)
    module.eval()
    pairs = pd.DataFrame({S.USER: USERS, S.ITEM: ITEMS, S.RATING: 4.0})
    ex = GaVaMoEExplainer(module, FakeVAE(), TITLES, pairs, {})
    gen = GenerationConfig(max_new_tokens=10, batch_size=2)
    tok = module.tokenizer  # a token row 0 emits early becomes the EOS: rows end at different steps
    tok.eos_token = tok.convert_ids_to_tokens(_new_ids(ex, gen)[0][2])
    return ex, gen


def _hf(ex, gen, batch_size=1) -> list[str]:
    """The old path: HF generate over fixed batches (drop_finished off)."""
    hf = replace(gen, drop_finished=False, batch_size=batch_size)
    return ex.explain(USERS, ITEMS, hf, progress=False)


def _calls(ex, monkeypatch) -> list[int]:
    calls = []
    real = ex.module.generate
    monkeypatch.setattr(ex.module, "generate", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    return calls


def test_mixed_clusters_in_a_refilled_batch_give_the_greedy_text_of_hf_generate_alone(expl, monkeypatch):
    ex, gen = expl
    assert sorted(set(ex.inputs(USERS, ITEMS)[2].tolist())) == [0, 1, 2]
    ends = [len(ids) for ids in _new_ids(ex, gen)]
    assert len(set(ends)) > 1 and min(ends) < gen.max_new_tokens  # slots free up mid-decode and are refilled
    alone = _hf(ex, gen)
    assert all(alone) and len(set(alone)) > 2
    assert _hf(ex, gen, batch_size=len(PAIRS)) == alone
    calls = _calls(ex, monkeypatch)
    assert ex.explain(USERS, ITEMS, gen, progress=False) == alone
    assert ex.explain(USERS[::-1], ITEMS[::-1], gen, progress=False) == alone[::-1]
    assert calls == []  # not HF generate


def test_seeded_sampling_draws_what_hf_generate_draws_for_each_row(expl):
    ex, gen = expl
    sampled = replace(gen, do_sample=True, temperature=1.5, top_p=1.0)
    with seeded_rows(7):
        ours = ex.explain(USERS, ITEMS, sampled, progress=False)
        hf = _hf(ex, sampled)
    assert ours == hf and ours != _hf(ex, gen)


def test_beam_search_and_drop_finished_off_keep_hf_generate(expl, monkeypatch):
    ex, gen = expl
    calls = _calls(ex, monkeypatch)
    with pytest.raises(WhyrecError, match="beam search"):  # HF's beams, which the cluster gate refuses as before
        ex.explain(USERS[:2], ITEMS[:2], replace(gen, num_beams=2), progress=False)
    ex.explain(USERS[:2], ITEMS[:2], replace(gen, drop_finished=False), progress=False)
    assert len(calls) == 2
