"""LightGCN and whyrec's data pipeline on a synthetic power-law graph of 10M interactions: memory.

    python benchmarks/lightgcn_10m_memory.py [--interactions 10000000] [--users 1000000] [--items 300000] [--steps 2]
                                             [--old_load 1]

1. A child process writes a `RecDataset` folder (parquet) of `--interactions` distinct
   (user, item) pairs whose user activity and item popularity follow Zipf-like power laws
   (p(rank r) ∝ r^-0.9 for users, r^-1.0 for items; seeded), 98% train, 1% valid, 1% test.
2. A fresh child process runs what `whyrec train encoder` runs, stage by stage, and records
   time and peak RSS (`ru_maxrss`, monotone) after each: loading the folder and building the
   sparse train matrix (`whyrec.encoders.train._load_data`: Parquet record batches of the id
   columns -> arrow hash lookup into the saved id maps -> int32 arrays -> CSR), building LightGCN (the normalised
   adjacency, torch sparse CSR), one epoch's negative sampling for all edges, `--steps` BPR
   steps of the production epoch loop (`_run_epoch`: each step propagates over the whole
   graph, forward and backward), and full-ranking evaluation of `--eval_users` test users
   (score blocks capped at `whyrec.eval.ranking.SCORE_BLOCK_BYTES`).
   An epoch is 9,766 steps at XRec's batch of 1,024, so only a few steps are run.
3. With `--old_load 1`, a third child times the former in-memory load (`RecDataset.load`:
   the whole table in pandas, ids as Python strings mapped through dicts, then the CSR) for
   comparison; it must give the same CSR and splits (checked through the data digest).
Peak RSS is the number to hold against the 24 GiB budget.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GIB = 2**30


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def power_law(n: int, exponent: float, size: int, rng: np.random.Generator) -> np.ndarray:
    p = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return rng.choice(n, size=size, p=p / p.sum()).astype(np.int64)


def make_graph(out: Path, n_inter: int, n_users: int, n_items: int, seed: int) -> dict:
    import pandas as pd

    from whyrec.data import schema as S
    from whyrec.data.dataset import RecDataset

    rng = np.random.default_rng(seed)
    keys = np.empty(0, np.int64)
    while len(keys) < n_inter:  # power laws repeat pairs: draw until enough distinct ones
        need = int((n_inter - len(keys)) * 1.3) + 1000
        draw = power_law(n_users, 0.9, need, rng) * n_items + power_law(n_items, 1.0, need, rng)
        keys = np.unique(np.concatenate([keys, draw]))
    keys = rng.permutation(keys)[:n_inter]
    users, items = keys // n_items, keys % n_items
    split = np.where(rng.random(n_inter) < 0.98, S.TRAIN, np.where(rng.random(n_inter) < 0.5, S.VALID, S.TEST))
    frame = pd.DataFrame({S.USER: users, S.ITEM: items, S.SPLIT: split})
    ds = RecDataset(frame, None, None, user2idx={str(u): int(u) for u in range(n_users)},
                    item2idx={str(i): int(i) for i in range(n_items)},
                    meta={"source": f"synthetic power-law graph, seed {seed}"})
    ds.save(out)
    degree = np.bincount(users, minlength=n_users)
    return {"users_with_edges": int((degree > 0).sum()), "max_user_degree": int(degree.max()),
            "max_item_degree": int(np.bincount(items, minlength=n_items).max())}


def old_load(data: Path) -> None:
    """Child process: the in-memory load `_load_data` did before streaming; one JSON line."""
    import hashlib

    from whyrec.data import schema as S
    from whyrec.data.dataset import RecDataset
    from whyrec.encoders.lightgcn import interaction_matrix

    tic = time.perf_counter()
    ds = RecDataset.load(data)
    pairs = {name: ds.index_pairs(ds.split(name)) for name in S.SPLITS}
    train = interaction_matrix(*pairs[S.TRAIN], ds.n_users, ds.n_items)
    seconds = time.perf_counter() - tic
    h = hashlib.sha256()
    for arr in (train.indptr, train.indices, *pairs[S.VALID], *pairs[S.TEST]):
        h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    h.update(json.dumps([ds.user2idx, ds.item2idx], sort_keys=True).encode())
    print(json.dumps({"stage": "former in-memory load (RecDataset.load + index_pairs + CSR)", "seconds": seconds,
                      "peak_rss": peak_rss(), "digest": h.hexdigest()[:16]}), flush=True)


def run_stages(data: Path, steps: int, eval_users: int, threads: int) -> None:
    """Child process: one JSON line per stage on stdout."""
    import torch

    from whyrec.config import LightGCNConfig
    from whyrec.encoders.lightgcn import LightGCN
    from whyrec.encoders.train import _load_data, _run_epoch, sample_negatives
    from whyrec.eval.ranking import evaluate_ranking

    torch.set_num_threads(threads)
    config = LightGCNConfig()

    def report(stage, tic, **extra):
        print(json.dumps({"stage": stage, "seconds": time.perf_counter() - tic, "peak_rss": peak_rss(), **extra}),
              flush=True)

    tic = time.perf_counter()
    dset = _load_data(str(data), config)
    report("load dataset + train CSR (streaming)", tic, train_edges=int(dset.train.nnz), digest=dset.digest)
    tic = time.perf_counter()
    model = LightGCN(config, *dset.train.shape, dset.train, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    report("LightGCN: normalised adjacency + embeddings", tic, adj_nnz=int(model.adj.values().numel()))
    tic = time.perf_counter()
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(dset.train.shape[0]), np.diff(dset.train.indptr))
    order = rng.permutation(len(users))
    users, pos = users[order], dset.train.indices.astype(np.int64)[order]
    candidates = np.flatnonzero(dset.train.getnnz(axis=0) > 0)
    neg = sample_negatives(users, dset.train, candidates, rng)
    report("epoch triples: shuffle + negative sampling", tic)
    n = steps * config.batch_size
    triples = [torch.from_numpy(a[:n].copy()) for a in (users, pos, neg)]
    del users, pos, neg, order
    tic = time.perf_counter()
    loss = _run_epoch(model, opt, triples, config.batch_size)
    report(f"{steps} BPR steps (full-graph propagation, Adam)", tic, per_step=(time.perf_counter() - tic) / steps,
           loss=loss)
    tic = time.perf_counter()
    test_users = np.unique(dset.test[0])
    pick = np.isin(dset.test[0], np.random.default_rng(1).choice(test_users, min(eval_users, len(test_users)),
                                                                   replace=False))
    model.eval()
    metrics = evaluate_ranking(*model.embeddings(), (dset.test[0][pick], dset.test[1][pick]), dset.train, ks=(20,))
    report(f"evaluate {min(eval_users, len(test_users))} test users (full ranking, masked)", tic,
           recall=metrics["recall@20"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interactions", type=int, default=10_000_000)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=300_000)
    p.add_argument("--steps", type=int, default=2, help="BPR steps to run (an epoch is interactions/1024)")
    p.add_argument("--eval_users", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1, help="as train_encoder's default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--old_load", type=int, default=1, help="also time the former in-memory load (1) or not (0)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench-lightgcn-10m")
    p.add_argument("--_child", choices=["make", "train", "old_load"], help=argparse.SUPPRESS)
    args = p.parse_args()
    data = args.out / f"data-{args.interactions}-{args.users}-{args.items}-s{args.seed}"

    if args._child == "make":
        tic = time.perf_counter()
        info = make_graph(data, args.interactions, args.users, args.items, args.seed)
        print(json.dumps({"seconds": time.perf_counter() - tic, "peak_rss": peak_rss(), **info}))
        return
    if args._child == "train":
        return run_stages(data, args.steps, args.eval_users, args.threads)
    if args._child == "old_load":
        return old_load(data)

    me = [sys.executable, __file__, *sys.argv[1:]]
    made = None
    if not (data / "dataset.json").exists():
        made = json.loads(subprocess.run([*me, "--_child", "make"], check=True, capture_output=True, text=True)
                          .stdout.strip().splitlines()[-1])
        print(f"wrote {data} in {made['seconds']:.0f} s (peak RSS {made['peak_rss'] / GIB:.2f} GiB); {made}")
    proc = subprocess.Popen([*me, "--_child", "train"], stdout=subprocess.PIPE, text=True)
    rows = []
    for line in proc.stdout:
        if line.startswith("{"):
            rows.append(json.loads(line))
            print(f"  {rows[-1]['stage']}: {rows[-1]['seconds']:.1f} s, peak RSS {rows[-1]['peak_rss'] / GIB:.2f} GiB",
                  flush=True)
    if proc.wait():
        raise SystemExit(f"training child failed with exit code {proc.returncode}")
    old = None
    if args.old_load:
        old = json.loads(subprocess.run([*me, "--_child", "old_load"], check=True, capture_output=True, text=True)
                         .stdout.strip().splitlines()[-1])
        print(f"  {old['stage']}: {old['seconds']:.1f} s, peak RSS {old['peak_rss'] / GIB:.2f} GiB", flush=True)
        if old["digest"] != rows[0]["digest"]:
            raise SystemExit(f"streaming and in-memory loads differ: digest {rows[0]['digest']} vs {old['digest']}")
    size = sum(f.stat().st_size for f in data.iterdir())
    print(f"\n{args.interactions:,} interactions, {args.users:,} users x {args.items:,} items (power law), "
          f"{rows[0]['train_edges']:,} train edges; dataset folder {size / 2**20:.0f} MiB; torch threads {args.threads}\n")
    print("| stage | seconds | peak RSS so far (GiB) |")
    print("|---|---|---|")
    if made:
        print(f"| (separate process) generate + write the dataset | {made['seconds']:.1f} | {made['peak_rss'] / GIB:.2f} |")
    for r in rows:
        print(f"| {r['stage']} | {r['seconds']:.1f} | {r['peak_rss'] / GIB:.2f} |")
    if old:
        print(f"| (separate process) {old['stage']} | {old['seconds']:.1f} | {old['peak_rss'] / GIB:.2f} |")
        print(f"\nstreaming load: {rows[0]['seconds']:.1f} s vs {old['seconds']:.1f} s in memory, "
              f"same data digest {old['digest']} (identical CSR, splits and id maps)")
    steps = next(r for r in rows if "per_step" in r)
    print(f"\npeak RSS of training {max(r['peak_rss'] for r in rows) / GIB:.2f} GiB (budget 24 GiB); "
          f"{steps['per_step']:.1f} s per BPR step, so one epoch ≈ {steps['per_step'] * args.interactions / 1024 / 3600:.1f} h "
          f"at batch 1024 on this CPU")


if __name__ == "__main__":
    main()
