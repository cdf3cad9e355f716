"""Prepacked bf16 linears (`whyrec.llm.packed_linear`): the same numbers as `F.linear`, weights
followed when they change, and greedy continuous decoding unchanged on a tiny random Llama."""

import pytest
import torch
from torch import nn

from whyrec.config import GenerationConfig
from whyrec.llm.continuous_rows import decode_rows
from whyrec.llm.load import load_tiny_random
from whyrec.llm.packed_linear import _PACKS, _supported, packed_linears, prepacking

needs_packing = pytest.mark.skipif(not _supported(), reason="oneDNN cannot pack bf16 linears here (torch built "
                                   "without it, or a CPU without AVX512-BW/VL/DQ or AVX-NE-CONVERT)")


def _linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(48, 40, bias=True).to(torch.bfloat16)


@needs_packing
def test_packed_linear_gives_bitwise_the_plain_output_and_restores_the_module():
    lin, x = _linear(), torch.randn(5, 3, 48).to(torch.bfloat16)
    plain = lin(x)
    with torch.no_grad(), packed_linears(lin):
        assert "forward" in lin.__dict__  # the packed path is really in use
        packed = lin(x)
        assert lin(x[:, -1:]).shape == (5, 1, 40)  # strided 3-D input, as a head sees it
    assert "forward" not in lin.__dict__
    assert torch.equal(packed, plain.detach())


@needs_packing
def test_a_changed_weight_is_repacked():
    lin, x = _linear(), torch.randn(4, 48).to(torch.bfloat16)
    with torch.no_grad():
        with packed_linears(lin):
            before = lin(x)
        lin.weight.mul_(-1)  # an optimiser step updates in place: the old pack is stale
        with packed_linears(lin):
            after = lin(x)
    assert torch.equal(after, nn.functional.linear(x, lin.weight, lin.bias))
    assert not torch.equal(after, before)


@needs_packing
def test_weights_made_under_inference_mode_are_packed_too():
    """A model loaded under `torch.inference_mode` has inference-tensor weights, which keep no
    version counter (reading `_version` raises): `whyrec explain` on such a folder failed."""
    with torch.inference_mode():
        lin, x = _linear(), torch.randn(4, 48).to(torch.bfloat16)
        with packed_linears(lin):
            assert "forward" in lin.__dict__
            packed = lin(x)
        with packed_linears(lin):
            again = lin(x)
    assert torch.equal(packed, nn.functional.linear(x, lin.weight, lin.bias)) and torch.equal(again, packed)


def test_no_packing_with_gradients_fp32_weights_or_when_switched_off():
    lin = _linear()
    with packed_linears(lin):  # gradients wanted: packed weights carry no autograd
        assert "forward" not in lin.__dict__
    with torch.no_grad(), prepacking(False), packed_linears(lin):
        assert "forward" not in lin.__dict__
    fp32 = nn.Linear(8, 8)
    with torch.no_grad(), packed_linears(fp32):
        assert "forward" not in fp32.__dict__


@needs_packing
def test_greedy_continuous_decoding_is_unchanged_by_packing_in_bf16():
    llm, tok = load_tiny_random(torch.bfloat16, hidden_size=64)
    llm.eval()
    gen = torch.Generator().manual_seed(3)
    rows = [torch.randint(3, 200, (n,), generator=gen).tolist() for n in (5, 9, 7, 12, 6)]
    cfg = GenerationConfig(max_new_tokens=12, batch_size=3, repetition_penalty=1.0)
    eos = tok.eos_token_id
    with prepacking(False):
        plain = decode_rows(llm, rows, cfg, eos)
    assert llm not in _PACKS
    packed = decode_rows(llm, rows, cfg, eos)
    assert len(_PACKS[llm].forwards) == 2 * 7 + 1  # every q/k/v/o/gate/up/down of 2 layers and the head
    assert packed == plain and sum(map(len, packed)) > len(rows)


@needs_packing
def test_overlapping_blocks_never_leave_packed_forwards_behind():
    lin = _linear()
    with torch.no_grad():
        outer = packed_linears(lin)
        outer.__enter__()
        with packed_linears(lin):  # a second decoder on the same model (another server thread)
            assert lin.forward.packed
        assert lin.forward.packed  # the inner block did not undo the outer one
        inner = packed_linears(lin)
        inner.__enter__()
        outer.__exit__(None, None, None)  # the outer ends first
        inner.__exit__(None, None, None)
    assert "forward" not in lin.__dict__


def test_where_onednn_cannot_pack_bf16_the_block_is_a_no_op(monkeypatch):
    """On an AVX2-only CPU oneDNN's bf16 reorder raises; there the block must leave the plain
    forward in place (checked for real on such a CPU, by the probe's answer elsewhere)."""
    from whyrec.llm import packed_linear

    monkeypatch.setattr(packed_linear, "_supported", lambda: False)
    lin, x = _linear(), torch.randn(2, 48).to(torch.bfloat16)
    with torch.no_grad(), packed_linears(lin):
        assert "forward" not in lin.__dict__
        assert torch.equal(lin(x), nn.functional.linear(x, lin.weight, lin.bias))
