"""benchmarks/int8_linear.py times three kernels of one linear; they must compute the same product."""

from __future__ import annotations

import torch
from conftest import benchmark_script


def test_the_three_kernels_compute_the_same_linear():
    script = benchmark_script("int8_linear")
    fns = script.kernels(96, 64, rows=4)
    assert ("packed" in fns) == script.packing_runs_here()  # absent only where oneDNN cannot pack bf16
    bf16, int8 = (fns[k]().float() for k in ("bf16", "int8"))
    assert bf16.shape == int8.shape == (4, 96)
    if "packed" in fns:
        assert torch.allclose(fns["packed"]().float(), bf16, atol=0.05, rtol=0.02)
    # int8 per-channel weights: within a few quantisation steps of the bf16 product, far from unrelated values
    assert (int8 - bf16).abs().mean() < 0.05 * bf16.abs().mean()


def test_fp32_and_dynamic_int8_compute_the_same_linear():
    fns = benchmark_script("int8_linear").fp32_kernels(96, 64, rows=4)
    exact, approx = fns["fp32"](), fns["int8dyn"]()
    assert exact.dtype == approx.dtype == torch.float32 and exact.shape == approx.shape == (4, 96)
    assert (approx - exact).abs().mean() < 0.05 * exact.abs().mean()


def test_the_fp32_table_has_a_row_per_shape(capsys):
    rows = benchmark_script("int8_linear").main(["--fp32", "--rows", "2", "--reps", "1"])
    assert [r["weight"] for r in rows] == ["gate/up", "down", "q/o", "k/v", "LM head"]
    assert all(r["error"] < 0.05 and len(r["fp32_over_int8"]) == 1 for r in rows)
    assert "| LM head 49152 x 576 |" in capsys.readouterr().out
