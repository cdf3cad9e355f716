"""benchmarks/method_train_throughput.py counts a training step's model FLOPs by the formula in its
docstring: hand-computed numbers for a tiny decoder, and the frozen-backbone case agrees with
benchmarks/xrec_train_throughput.py's `model_flops` (the XRec reference) on the same batch."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import benchmark_script

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


_load = benchmark_script


@pytest.fixture(scope="module")
def bench():
    return _load("method_train_throughput")


def _tiny_config():
    from transformers import LlamaConfig

    # q width 2 heads x 2 = 4, k/v width 1 x 2 = 2
    return LlamaConfig(hidden_size=4, intermediate_size=8, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=1, vocab_size=10)


def test_arch_reads_the_llama_shapes(bench):
    arch = bench.Arch.of(_tiny_config())
    assert (arch.hidden, arch.inter, arch.layers, arch.heads, arch.kv_heads, arch.head_dim, arch.vocab) == (
        4, 8, 2, 2, 1, 2, 10)
    assert arch.linears() == {"q_proj": (4, 4), "k_proj": (4, 2), "v_proj": (4, 2), "o_proj": (4, 4),
                              "gate_proj": (4, 8), "up_proj": (4, 8), "down_proj": (8, 4)}


def test_frozen_step_by_hand(bench):
    arch = bench.Arch.of(_tiny_config())
    # per layer: attention 16 + 8 + 8 + 16 = 48, MLP 3 * 4 * 8 = 96 -> 4 * 2 * 144 = 1152 per token
    assert bench.per_token_weight_flops(arch, bench.Trainables()) == 1152
    # row L=3, t=2: 1152*3 + attention 12*2*4*3^2 + LM head 4*4*10*2
    assert bench.step_flops(arch, bench.Trainables(), [(3, 2)]) == 3456 + 864 + 320


def test_lora_and_moe_step_by_hand(bench):
    arch = bench.Arch.of(_tiny_config())
    tr = bench.Trainables(lora_r=1, lora_targets=("q_proj", "v_proj"), moe_layers=(1,), top_k=2, n_experts=3)
    # frozen: attention of both layers + the dense MLP of layer 0: 4 * (96 + 96) = 768
    # trainable: LoRA (1*(4+4) + 1*(4+2)) * 2 layers = 28; layer 1's 2 active experts 2*96 + router 4*3 = 204
    assert bench.per_token_weight_flops(arch, tr) == 768 + 6 * (28 + 204)
    rows = [(3, 2), (1, 1)]
    assert bench.step_flops(arch, tr, rows) == (2160 * 3 + 864 + 320) + (2160 + 12 * 2 * 4 + 4 * 4 * 10)


def test_frozen_backbone_matches_the_xrec_reference(bench):
    torch = pytest.importorskip("torch")
    xrec = _load_xrec_reference()
    from transformers import LlamaConfig

    conf = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                       num_key_value_heads=3, vocab_size=49152)  # SmolLM2-135M's shapes
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    labels = torch.tensor([[-100, -100, -100, 5, 6], [-100, -100, 7, 8, 9]])
    useful = xrec.model_flops(conf, {"attention_mask": mask, "labels": labels, "input_ids": mask})[0]
    assert bench.step_flops(bench.Arch.of(conf), bench.Trainables(), [(4, 2), (5, 3)]) == useful
    assert bench.per_token_weight_flops(bench.Arch.of(conf), bench.Trainables()) / 4 == pytest.approx(106.2e6, rel=1e-3)


def _load_xrec_reference():
    """xrec_train_throughput imports explain_throughput (the whyrec stack) at its top."""
    sys.path.insert(0, str(BENCH))
    try:
        return _load("xrec_train_throughput")
    except ImportError as e:  # pragma: no cover - only when the benchmark's imports break
        pytest.fail(f"benchmarks/xrec_train_throughput.py does not import: {e}")
    finally:
        sys.path.remove(str(BENCH))


def test_bf16_peaks_read_nan_where_bf16_is_emulated(monkeypatch):
    """An AVX2-only CPU emulates bf16 matmuls at ~1/500 of fp32: timing their peak took minutes there."""
    from whyrec.llm import precision

    xrec = _load_xrec_reference()
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert math.isnan(xrec.peak_matmul_flops(64, reps=1, dtype=torch.bfloat16))
    assert xrec.peak_matmul_flops(64, reps=1) > 0  # fp32 is always timed
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert xrec.peak_matmul_flops(64, reps=1, dtype=torch.bfloat16) > 0
