"""LightGCN (He et al., SIGIR 2020) with XRec's hyperparameters on XRec's Amazon-books graph.

    python benchmarks/lightgcn_xrec_amazon.py --epochs 3 [--shared ../shared/data] [--out runs/bench-lightgcn]

The training graph (15,349 users, 15,247 items, 288,671 edges) is rebuilt from XRec's
`para_dict.pickle` (`trn_user_nb`: per user, its training items); validation and test come
from `total_val.csv` / `total_tst.csv` (user,item,Time), with XRec's integer ids kept as
indices. Trains through `whyrec.encoders.train.train_encoder` (so the run is resumable and a
finished run is cached), then prints epoch time, Recall@20/NDCG@20 on valid and test under
the usual protocol (train items masked, mean over users), the same numbers under XRec's own
protocol (no masking, mean over interaction rows; METHODS §3.1) and a popularity baseline.

    python benchmarks/lightgcn_xrec_amazon.py --vs_pyg 1 [--pyg_coo_steps 5]

Side by side with `torch_geometric.nn.LightGCN` (a test-only dependency: `pip install
torch_geometric`): the same graph, hyperparameters (dim 64, 4 layers, summed layers, Adam lr
1e-3, batch 1024, L2 1e-6), initial weights and, each epoch, the same (user, pos, neg) triples.
whyrec runs its production epoch (`whyrec.encoders.train._run_epoch`); PyG runs the loop of its
`examples/lightgcn.py` (`model(edge_index, edge_label_index)`, `recommendation_loss`) on a
`torch.sparse` CSR adjacency, PyG's fastest input without `torch_sparse`. Epochs alternate
between the two (whyrec first on odd epochs) so machine load hits both alike. PyG's default
COO `edge_index` input is ~5x slower still: --pyg_coo_steps times that many of its steps and
extrapolates an epoch. Recall/NDCG@20 of both on valid and test, train items masked.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from whyrec.config import LightGCNConfig
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.safe_pickle import safe_load_pickle
from whyrec.encoders.artifact import load_encoder
from whyrec.encoders.train import train_encoder
from whyrec.eval.ranking import ground_truth_sets, ndcg_at_k, recall_at_k, topk_from_scores

REPO = Path(__file__).resolve().parents[1]
PYG_MISSING = ("--vs_pyg needs torch_geometric (a test-only dependency, not in any extra): "
               "pip install torch_geometric  (check `pip install --dry-run` leaves torch alone; else --no-deps)")


def build_dataset(src: Path, out: Path) -> Path:
    """XRec's amazon split as a RecDataset folder (ids "0".."n-1" map to XRec's indices)."""
    if (out / "dataset.json").exists():
        return out
    para = safe_load_pickle(src / "para_dict.pickle")
    n_users, n_items = para["user_num"], para["item_num"]
    train_users = np.repeat(np.arange(n_users), [len(items) for items in para["trn_user_nb"]])
    frames = [pd.DataFrame({S.USER: train_users, S.ITEM: np.concatenate(para["trn_user_nb"]), S.SPLIT: S.TRAIN})]
    for split, name in ((S.VALID, "total_val.csv"), (S.TEST, "total_tst.csv")):
        csv = pd.read_csv(src / name)
        frames.append(pd.DataFrame({S.USER: csv["user"], S.ITEM: csv["item"], S.SPLIT: split}))
    frame = pd.concat(frames, ignore_index=True)
    RecDataset(frame, None, None, user2idx={str(u): u for u in range(n_users)},
               item2idx={str(i): i for i in range(n_items)},
               meta={"source": "XRec amazon para_dict.pickle + total_{val,tst}.csv"}).save(out)
    return out


def xrec_protocol(enc, pairs: tuple[np.ndarray, np.ndarray], k: int = 20) -> dict[str, float]:
    """XRec's encoder metrics: no train masking, every interaction row counts once."""
    users, truth = ground_truth_sets(*pairs)
    topk = np.concatenate([topk_from_scores(enc.user_emb[users[i : i + 1024]] @ enc.item_emb.T, k).numpy()
                           for i in range(0, len(users), 1024)])  # [n_users, k]
    row_user = np.searchsorted(users, pairs[0])  # each row -> its user's position
    row_truth = [truth[i] for i in row_user]
    return {f"recall@{k}": recall_at_k(topk[row_user], row_truth), f"ndcg@{k}": ndcg_at_k(topk[row_user], row_truth)}


class _PygRun:
    """torch_geometric's LightGCN trained the way PyG's examples/lightgcn.py trains it."""

    def __init__(self, config: LightGCNConfig, train, user_ego: torch.Tensor, item_ego: torch.Tensor):
        from torch_geometric.nn import LightGCN as PygLightGCN
        from torch_geometric.utils import to_torch_csr_tensor

        self.n_users, n_items = train.shape
        rows = torch.from_numpy(np.repeat(np.arange(self.n_users), np.diff(train.indptr)))
        cols = torch.from_numpy(train.indices.astype(np.int64)) + self.n_users
        self.edge_index = torch.cat([torch.stack([rows, cols]), torch.stack([cols, rows])], 1)  # [2, 2E]
        self.csr = to_torch_csr_tensor(self.edge_index, size=(self.n_users + n_items,) * 2)
        alpha = torch.ones(config.n_layers + 1) if config.layer_combine == "sum" else None
        self.model = PygLightGCN(self.n_users + n_items, config.dim, config.n_layers, alpha=alpha)
        with torch.no_grad():  # same start as whyrec's model
            self.model.embedding.weight.copy_(torch.cat([user_ego, item_ego]))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        # PyG's BPRLoss divides λ‖E_batch‖² by the batch size; whyrec does not (XRec): scale λ to match.
        self.lambda_reg = config.weight_decay * config.batch_size

    def step(self, users, pos, neg, adj) -> float:
        label_index = torch.cat([torch.stack([users, pos + self.n_users]), torch.stack([users, neg + self.n_users])], 1)
        pos_rank, neg_rank = self.model(adj, label_index).chunk(2)
        loss = self.model.recommendation_loss(pos_rank, neg_rank, node_id=label_index.unique(),
                                              lambda_reg=self.lambda_reg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()

    def epoch(self, triples, batch_size: int) -> float:
        users, pos, neg = triples
        total = 0.0
        for s in range(0, len(users), batch_size):
            sl = slice(s, s + batch_size)
            total += self.step(users[sl], pos[sl], neg[sl], self.csr) * len(users[sl])
        return total / len(users)

    @torch.no_grad()
    def embeddings(self):
        out = self.model.get_embedding(self.csr)
        return out[: self.n_users], out[self.n_users :]


def compare_pyg(args, data: Path) -> None:
    """whyrec's LightGCN vs torch_geometric's, interleaved epoch by epoch; prints a table."""
    try:
        import torch_geometric  # noqa: F401
    except ImportError:
        raise SystemExit(PYG_MISSING) from None
    import warnings

    from whyrec.encoders.lightgcn import LightGCN
    from whyrec.encoders.train import _load_data, _run_epoch, sample_negatives
    from whyrec.eval.ranking import evaluate_ranking

    warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
    torch.set_num_threads(args.threads)
    config = LightGCNConfig(batch_size=args.batch_size, lr=args.lr, layer_combine=args.layer_combine)
    dset = _load_data(str(data), config)
    torch.manual_seed(config.seed)
    ours = LightGCN(config, *dset.train.shape, dset.train, generator=torch.Generator().manual_seed(config.seed))
    ours_opt = torch.optim.Adam(ours.parameters(), lr=config.lr)
    pyg = _PygRun(config, dset.train, ours.user_ego.detach(), ours.item_ego.detach())
    users_all = np.repeat(np.arange(dset.train.shape[0]), np.diff(dset.train.indptr))
    items_all = dset.train.indices.astype(np.int64)
    candidates = np.flatnonzero(dset.train.getnnz(axis=0) > 0)
    rng = np.random.default_rng(config.seed)
    seconds = {"whyrec": [], "pyg": []}
    losses = {"whyrec": [], "pyg": []}
    for epoch in range(args.vs_pyg):
        order = rng.permutation(len(users_all))
        users, pos = users_all[order], items_all[order]
        neg = sample_negatives(users, dset.train, candidates, rng)
        triples = [torch.from_numpy(a) for a in (users, pos, neg)]
        runs = [("whyrec", lambda t=triples: _run_epoch(ours, ours_opt, t, config.batch_size)),
                ("pyg", lambda t=triples: pyg.epoch(t, config.batch_size))]
        for name, run in runs if epoch % 2 == 0 else runs[::-1]:
            tic = time.perf_counter()
            losses[name].append(run())
            seconds[name].append(time.perf_counter() - tic)
        print(f"epoch {epoch + 1}: whyrec {seconds['whyrec'][-1]:.1f} s (loss {losses['whyrec'][-1]:.4f}), "
              f"pyg {seconds['pyg'][-1]:.1f} s (loss {losses['pyg'][-1]:.4f})", flush=True)
    coo = None
    if args.pyg_coo_steps:
        b = config.batch_size
        t = [torch.from_numpy(a[:b]) for a in (users, pos, neg)]
        tic = time.perf_counter()
        for _ in range(args.pyg_coo_steps):
            pyg.step(*t, pyg.edge_index)
        coo = (time.perf_counter() - tic) / args.pyg_coo_steps * -(-len(users_all) // b)
    ours.eval()
    metrics = {"whyrec": [evaluate_ranking(*ours.embeddings(), p, dset.train, ks=(20,)) for p in (dset.valid, dset.test)],
               "pyg": [evaluate_ranking(*pyg.embeddings(), p, dset.train, ks=(20,)) for p in (dset.valid, dset.test)]}
    mean = {k: float(np.mean(v)) for k, v in seconds.items()}
    print(f"\n{dset.train.shape[0]:,} users, {dset.train.shape[1]:,} items, {dset.train.nnz:,} train edges; "
          f"{args.vs_pyg} epoch(s) each, same triples and initial weights, torch threads {args.threads}\n")
    print("| model | s/epoch | time vs PyG | valid R@20 | valid N@20 | test R@20 | test N@20 |")
    print("|---|---|---|---|---|---|---|")
    for name, label in (("whyrec", "whyrec LightGCN"), ("pyg", "torch_geometric LightGCN (torch.sparse CSR adj)")):
        v, t = metrics[name]
        print(f"| {label} | {mean[name]:.1f} | {mean[name] / mean['pyg']:.2f}× | {v['recall@20']:.4f} | "
              f"{v['ndcg@20']:.4f} | {t['recall@20']:.4f} | {t['ndcg@20']:.4f} |")
    if coo is not None:
        print(f"| torch_geometric LightGCN (COO edge_index, default) | {coo:.0f} (from {args.pyg_coo_steps} steps) "
              f"| {coo / mean['pyg']:.2f}× | – | – | – | – |")
    recall = metrics["whyrec"][1]["recall@20"] / max(metrics["pyg"][1]["recall@20"], 1e-12)
    print(f"\nwhyrec / PyG: time {mean['whyrec'] / mean['pyg']:.2f}× (goal ≤ 0.5×), test Recall@20 {recall:.3f}×")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench-lightgcn-xrec-amazon")
    p.add_argument("--epochs", type=int, default=300, help="cap on epochs (XRec: 300 with patience 10)")
    p.add_argument("--batch_size", type=int, default=1024, help="XRec: 1024")
    p.add_argument("--lr", type=float, default=1e-3, help="XRec: 1e-3")
    p.add_argument("--layer_combine", default="sum", choices=["sum", "mean"])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads while training")
    p.add_argument("--device", default="auto")
    p.add_argument("--vs_pyg", type=int, default=0, metavar="EPOCHS",
                   help="instead: train whyrec's and torch_geometric's LightGCN side by side for EPOCHS epochs")
    p.add_argument("--pyg_coo_steps", type=int, default=0, help="with --vs_pyg: time PyG's COO input over N steps")
    args = p.parse_args()

    data = build_dataset(args.shared / "xrec-amazon", args.out / "data")
    if args.vs_pyg:
        return compare_pyg(args, data)
    config = LightGCNConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                            layer_combine=args.layer_combine)
    name = f"b{args.batch_size}-lr{args.lr:g}-{args.layer_combine}"
    tic = time.perf_counter()
    metrics = train_encoder(str(data), str(args.out / name), config=config, device=args.device,
                            num_threads=args.threads)
    wall = time.perf_counter() - tic

    enc = load_encoder(args.out / name)
    ds = RecDataset.load(data)
    pairs = {s: ds.index_pairs(ds.split(s)) for s in (S.VALID, S.TEST)}
    rows = [("LightGCN, masked (whyrec)", metrics["valid"], metrics["test"]),
            ("LightGCN, XRec protocol", xrec_protocol(enc, pairs[S.VALID]), xrec_protocol(enc, pairs[S.TEST])),
            ("popularity, masked", metrics["popularity"]["valid"], metrics["popularity"]["test"])]
    print(f"\nconfig: {dataclasses.asdict(config)}, threads {args.threads}")
    print(f"epochs run {metrics['epochs_run']} (best {metrics['best_epoch']}), "
          f"{metrics['seconds_per_epoch']:.1f} s/epoch (training only), wall {wall:.0f} s\n")
    print("| model | valid R@20 | valid N@20 | test R@20 | test N@20 |")
    print("|---|---|---|---|---|")
    for label, valid, test in rows:
        print(f"| {label} | {valid['recall@20']:.4f} | {valid['ndcg@20']:.4f} | {test['recall@20']:.4f} | {test['ndcg@20']:.4f} |")


if __name__ == "__main__":
    main()
