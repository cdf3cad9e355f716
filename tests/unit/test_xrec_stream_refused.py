"""XRec's continuous batching pulls again when every request of one pull is refused (bad prompt in
`decode.stream`, bad pair in the served model's `_stream`), as GaVaMoE's does: an empty answer
to the decoder would end the session and leave the valid requests behind it undecoded."""

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from whyrec.config import GenerationConfig, ModelConfig, XRecConfig
from whyrec.llm.load import load_model
from whyrec.methods.xrec import decode as D
from whyrec.methods.xrec.model import XRec
from whyrec.methods.xrec.served import XRecModel

torch.set_num_threads(1)
ROWS = [("Toy Story (1995)", "likes animation", "a family film"),
        ("Heat (1995)", "likes crime thrillers a lot", "a heist film"),
        ("Fargo (1996)", "dark comedy", "snow")]


@pytest.fixture(scope="module")
def xrec():
    torch.manual_seed(0)
    llm, tok = load_model(ModelConfig("tiny-random-llama", dtype="float32", device="cpu"))
    model = XRec(llm, tok, 8, XRecConfig(n_exps=2, item_noun="movie", dropout=0.0)).eval()
    vec = 3 * torch.randn(len(ROWS), 2, 8, generator=torch.Generator().manual_seed(1))
    gen = GenerationConfig(max_new_tokens=8, repetition_penalty=1.1, batch_size=2)
    enc = model.encode([model.prompt(*r) for r in ROWS], side="left")
    with torch.no_grad():
        texts = model.generate(enc["input_ids"], enc["attention_mask"], vec[:, 0], vec[:, 1], gen)
    return model, vec, gen, texts


def _scripted(batches: list[list]):
    """A pull that hands over the next scripted batch whatever the free slots, then nothing."""
    calls = []

    def pull(free):
        calls.append(free)
        return batches.pop(0) if batches else []

    return pull, calls


def test_a_pull_of_only_bad_prompts_is_followed_by_another(xrec):
    model, vec, gen, texts = xrec
    bad = [(f"bad{k}", "a prompt without the special tokens", vec[0, 0], vec[0, 1]) for k in range(2)]
    good = [(k, model.prompt(*r), vec[k, 0], vec[k, 1]) for k, r in enumerate(ROWS)]
    pull, calls = _scripted([bad, good[:1], bad[:1], good[1:]])
    got = {}
    with torch.no_grad():
        D.stream(model, pull, got.__setitem__, gen)
    assert all(isinstance(got.pop(k), ValueError) for k in ("bad0", "bad1"))
    assert [got[k] for k in range(len(ROWS))] == texts and all(texts)
    assert calls[:2] == [2, 2]  # the refused pull freed no slot, so the next asks for both


def test_served_stream_pulls_again_after_every_request_is_refused(xrec):
    model, vec, gen, texts = xrec

    def row(pair):
        if pair not in range(len(ROWS)):
            raise KeyError(f"unknown user {pair!r}")
        return model.prompt(*ROWS[pair]), vec[pair, 0], vec[pair, 1]

    served = SimpleNamespace(explainer=SimpleNamespace(module=model), gen=replace(gen), torch=torch,
                             generate_calls=0, _row=row)
    pull, _ = _scripted([[("x", "nobody"), ("y", "nobody")], [(k, k) for k in range(len(ROWS))]])
    got = {}
    XRecModel._stream(served, pull, got.__setitem__)
    assert isinstance(got.pop("x"), KeyError) and isinstance(got.pop("y"), KeyError)
    assert [got[k] for k in range(len(ROWS))] == texts
