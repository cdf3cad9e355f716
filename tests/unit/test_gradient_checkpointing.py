"""Gradient checkpointing keeps XRec's q/k/v injection and GaVaMoE's routing in the recomputation."""

import test_gavamoe as G
import test_xrec as X
import torch

from whyrec.llm.checkpointing import enable_gradient_checkpointing


def _grads(module, loss_fn):
    module.train()
    module.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    loss_fn().backward()
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad and p.grad is not None}


def _same_with_and_without(build, loss_fn_for):
    plain, ckpt = build(), build()
    assert enable_gradient_checkpointing(ckpt) == 1  # the one (outermost) HF model inside
    a, b = _grads(plain, loss_fn_for(plain)), _grads(ckpt, loss_fn_for(ckpt))
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=1e-5, msg=name)


def test_xrec_injection_survives_recomputation():
    def loss_fn_for(m):
        b = X.batch(m)
        u, i = torch.randn(2, X.DIM, generator=torch.Generator().manual_seed(1)).unbind(0)
        return lambda: m(b["input_ids"], b["attention_mask"], b["labels"], u[None].repeat(2, 1), i[None].repeat(2, 1))

    _same_with_and_without(lambda: X.build(inject=True), loss_fn_for)
    # the injection matters: its k/v map gets a gradient only through the checkpointed layers
    m = X.build(inject=True)
    enable_gradient_checkpointing(m)
    assert any(n.startswith(("kv_proj", "q_proj")) for n in _grads(m, loss_fn_for(m)))


def test_gavamoe_routing_survives_recomputation():
    def loss_fn_for(m):
        b = G.batch(m)
        clusters = torch.tensor([0, 2])  # two different routers in one batch
        return lambda: m(b["input_ids"], b["attention_mask"], b["labels"], *G.VEC, clusters)

    _same_with_and_without(G.build, loss_fn_for)
