"""ClusterMoE's sorted dispatch and bf16 expert matmuls against the old per-expert loop."""

import copy

import pytest
import torch
from test_precision import _gavamoe, _train
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaMLP

from whyrec.adapters.cluster_experts import ClusterMoE, route_by
from whyrec.llm.precision import keep_trainables_fp32

torch.set_num_threads(1)
H, INTER, E, CLUSTERS = 16, 24, 4, 3


def loop_forward(moe: ClusterMoE, x: torch.Tensor) -> torch.Tensor:
    """The forward before the sorted dispatch: one nonzero scan and index_add per expert."""
    top_idx, weights = moe.route(x, moe.cluster_ids)
    flat = x.reshape(-1, x.shape[-1])
    idx, wts = top_idx.reshape(-1, moe.top_k), weights.reshape(-1, moe.top_k)
    out = torch.zeros_like(flat)
    for e, expert in enumerate(moe.experts):
        tok, slot = (idx == e).nonzero(as_tuple=True)
        if tok.numel():
            out.index_add_(0, tok, expert(flat[tok]) * wts[tok, slot].unsqueeze(-1))
    return out.view_as(x)


def make_moe(top_k: int, dtype=torch.float32, seed: int = 0) -> ClusterMoE:
    """Distinct random experts and routers (upcycled copies would hide a wrong expert choice)."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=H, intermediate_size=INTER, num_attention_heads=2, hidden_act="silu")
    moe = ClusterMoE([LlamaMLP(cfg) for _ in range(E)], H, CLUSTERS, top_k)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return moe.to(dtype)


def run(moe: ClusterMoE, x: torch.Tensor, ids: torch.Tensor, forward) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Output, input gradient and parameter gradients (None where a parameter got none)."""
    x = x.detach().clone().requires_grad_(True)
    moe.zero_grad(set_to_none=True)
    with route_by([moe], ids):
        y = forward(moe, x)
    y.backward(torch.linspace(-1, 1, y.numel()).view_as(y).to(y.dtype))
    return y.detach(), x.grad, {n: p.grad for n, p in moe.named_parameters()}


def new_forward(moe, x):
    return moe(x)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_fp32_output_and_gradients_equal_the_loop(top_k):
    moe = make_moe(top_k)
    x, ids = torch.randn(3, 7, H), torch.tensor([0, 2, 1])
    y_old, gx_old, g_old = run(moe, x, ids, loop_forward)
    y_new, gx_new, g_new = run(moe, x, ids, new_forward)
    assert y_new.dtype is torch.float32
    torch.testing.assert_close(y_new, y_old, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx_new, gx_old, atol=1e-5, rtol=1e-5)
    assert g_new.keys() == g_old.keys()
    for name in g_old:
        assert (g_new[name] is None) == (g_old[name] is None), name
        if g_old[name] is not None:
            torch.testing.assert_close(g_new[name], g_old[name], atol=1e-5, rtol=1e-5, msg=name)


def test_an_expert_no_token_chose_gets_no_gradient_as_before():
    moe = make_moe(1)
    with torch.no_grad():
        moe.routers[0].weight[3] = -100.0  # on positive inputs expert 3 never wins for cluster 0
    x = torch.randn(2, 5, H).abs()
    _, _, g_old = run(moe, x, torch.tensor([0, 0]), loop_forward)
    _, _, g_new = run(moe, x, torch.tensor([0, 0]), new_forward)
    assert g_old["experts.3.up_proj.weight"] is None and g_new["experts.3.up_proj.weight"] is None


def bf16_backbone_moe(top_k: int) -> ClusterMoE:
    """As GaVaMoE builds it on a bf16 backbone: bf16 activations, fp32 trainable weights."""
    moe = make_moe(top_k, torch.bfloat16, seed=1)
    keep_trainables_fp32(moe)
    return moe


def test_bf16_activations_run_the_experts_under_bf16_autocast_with_fp32_weights():
    moe = bf16_backbone_moe(2)
    seen = []
    moe.experts[0].gate_proj.register_forward_pre_hook(
        lambda m, a: seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu")))
    x, ids = torch.randn(2, 6, H, dtype=torch.bfloat16), torch.tensor([1, 2])
    y, gx, grads = run(moe, x, ids, new_forward)
    assert seen == [torch.bfloat16]  # the expert's matmuls ran under bf16 autocast (before: fp32)
    assert y.dtype is torch.bfloat16 and gx.dtype is torch.bfloat16
    assert all(p.dtype is torch.float32 for p in moe.parameters())
    assert all(g.dtype is torch.float32 for g in grads.values() if g is not None)
    assert not torch.is_autocast_enabled("cpu")  # left as found


def test_bf16_path_stays_close_to_fp32_matmuls():
    moe = bf16_backbone_moe(2)
    x, ids = torch.randn(3, 8, H, dtype=torch.bfloat16), torch.tensor([0, 1, 2])
    y_new, gx_new, g_new = run(moe, x, ids, new_forward)
    moe.bf16_matmuls = False  # the old precision: fp32 matmuls on the same bf16 activations
    y_old, gx_old, g_old = run(moe, x, ids, loop_forward)
    rel = lambda a, b: float((a.float() - b.float()).norm() / b.float().norm())  # noqa: E731
    assert rel(y_new, y_old) < 0.03 and rel(gx_new, gx_old) < 0.03
    for name, g in g_old.items():
        if g is not None:
            assert rel(g_new[name], g) < 0.05, name


def test_bf16_matmuls_off_matches_the_loop_on_bf16_activations():
    moe = bf16_backbone_moe(2)
    moe.bf16_matmuls = False
    x, ids = torch.randn(2, 5, H, dtype=torch.bfloat16), torch.tensor([2, 0])
    y_old, _, _ = run(moe, x, ids, loop_forward)
    y_new, _, _ = run(moe, x, ids, new_forward)
    torch.testing.assert_close(y_new, y_old, atol=2e-2, rtol=2e-2)  # bf16 rounding of the slot sum


def test_state_dict_names_and_shapes_are_unchanged():
    moe = make_moe(2)
    keys = {f"experts.{e}.{p}_proj.weight" for e in range(E) for p in ("gate", "up", "down")}
    keys |= {f"routers.{c}.weight" for c in range(CLUSTERS)}
    state = moe.state_dict()
    assert set(state) == keys
    assert state["experts.0.down_proj.weight"].shape == (H, INTER) and state["routers.2.weight"].shape == (E, H)


def test_a_few_steps_lower_the_loss_on_a_bf16_backbone():
    module = _gavamoe("bfloat16")
    assert all(moe.bf16_matmuls for moe in module.moes)
    losses, opt = _train(module)
    assert losses[-1] < losses[0] - 0.1
    assert all(s["exp_avg"].dtype is torch.float32 for s in opt.state.values())


def test_upcycled_copy_of_a_bf16_mlp_still_equals_the_dense_mlp():
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=H, intermediate_size=INTER, num_attention_heads=2, hidden_act="silu")
    mlp = LlamaMLP(cfg).to(torch.bfloat16)
    moe = ClusterMoE([copy.deepcopy(mlp) for _ in range(E)], H, CLUSTERS, 2).to(torch.bfloat16)
    keep_trainables_fp32(moe)
    x = torch.randn(2, 4, H, dtype=torch.bfloat16)
    with torch.no_grad(), route_by([moe], torch.tensor([0, 1])):
        # same bf16 weights in bf16 matmuls: only the two-slot weighted sum rounds differently
        torch.testing.assert_close(moe(x), mlp(x), atol=2e-2, rtol=2e-2)
