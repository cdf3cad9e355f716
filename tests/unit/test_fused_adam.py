"""`whyrec.utils.adam`: fused on plain CPU parameters, the same updates as torch's default Adam/AdamW."""

from __future__ import annotations

import pytest
import torch

from whyrec.utils import adam


def _steps(make, n: int = 5) -> torch.Tensor:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(64, 32))
    opt = make([w])
    for _ in range(n):
        opt.zero_grad()
        (w.sin() ** 2).sum().backward()
        opt.step()
    return w.detach()


@pytest.mark.parametrize("decoupled, cls", [(False, torch.optim.Adam), (True, torch.optim.AdamW)])
def test_fused_on_cpu_with_the_default_updates(decoupled, cls):
    opt = adam([torch.nn.Parameter(torch.zeros(3))], 1e-2, decoupled=decoupled)
    assert type(opt) is cls and opt.defaults["fused"] is True
    fused = _steps(lambda p: adam(p, 1e-2, decoupled=decoupled, weight_decay=0.1))
    plain = _steps(lambda p: cls(p, lr=1e-2, weight_decay=0.1))
    start = _steps(lambda p: cls(p, lr=1e-2), n=0)
    assert (plain - start).abs().max() > 1e-2  # the steps moved the weights ...
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)  # ... the same way


def test_not_fused_where_a_parameter_cannot_be():
    meta = torch.nn.Parameter(torch.zeros(3, device="meta"))
    assert adam([meta], 1e-3).defaults["fused"] is None
