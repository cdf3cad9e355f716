"""`data_parallel_step` on 2 gloo processes: disjoint shards, and the single-process update."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from dist_helpers import free_port

from whyrec.distributed import data_parallel_step, shard

pytestmark = pytest.mark.distributed

X = torch.randn(13, 5, generator=torch.Generator().manual_seed(0))
Y = torch.randn(13, 1, generator=torch.Generator().manual_seed(1))
WEIGHTS = torch.arange(1, 14, dtype=torch.float32)  # uneven per-example "token counts"
BATCHES = [[0, 3, 5, 7, 8], [1, 2, 4, 6, 9, 10, 11, 12]]  # two micro-batches of one global batch


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))


def _run(clip):
    """Two optimizer steps; returns (weights, losses, indices this process saw)."""
    model = _model()
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=0.05)
    seen = []

    def loss_fn(idx):
        seen.extend(idx)
        w = WEIGHTS[idx]
        per = (model(X[idx]) - Y[idx]).square().squeeze(1)
        return (per * w).sum() / w.sum(), w.sum()  # a token-weighted mean, like the LLM losses

    losses = [data_parallel_step(params, opt, BATCHES, loss_fn, max_grad_norm=clip) for _ in range(2)]
    return [p.detach().clone() for p in params], losses, seen


def _worker(r, port, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=r, world_size=2)
    try:
        for clip in CLIPS:
            weights, losses, seen = _run(clip)
            queue.put(((r, clip), ([w.tolist() for w in weights], losses, seen)))  # lists: no shared memory
    finally:
        dist.destroy_process_group()


CLIPS = (None, 0.05)  # without and with global-norm clipping (which must see the reduced gradient)


def test_two_ranks_equal_one_process_and_split_the_batch():
    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in range(2 * len(CLIPS)))
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    for clip in CLIPS:
        _check(clip, {r: results[(r, clip)] for r in (0, 1)})


def _check(clip, results):
    ref_weights, ref_losses, ref_seen = _run(clip)
    seen0, seen1 = results[0][2], results[1][2]
    assert not set(seen0) & set(seen1) and sorted(seen0 + seen1) == sorted(ref_seen)
    assert seen0 == shard(BATCHES[0], 0, 2) + shard(BATCHES[1], 0, 2) + shard(BATCHES[0], 0, 2) + shard(BATCHES[1], 0, 2)
    for r in (0, 1):
        weights, losses, _ = results[r]
        assert losses == pytest.approx(ref_losses, rel=1e-6)
        for a, b in zip(weights, ref_weights):
            torch.testing.assert_close(torch.tensor(a), b, atol=1e-6, rtol=1e-5)

