"""LightGCN (He et al., SIGIR 2020) with XRec's hyperparameters on XRec's Amazon-books graph.

    python benchmarks/lightgcn_xrec_amazon.py --epochs 3 [--shared ../shared/data] [--out runs/bench-lightgcn]

The training graph (15,349 users, 15,247 items, 288,671 edges) is rebuilt from XRec's
`para_dict.pickle` (`trn_user_nb`: per user, its training items); validation and test come
from `total_val.csv` / `total_tst.csv` (user,item,Time), with XRec's integer ids kept as
indices. Trains through `whyrec.encoders.train.train_encoder` (so the run is resumable and a
finished run is cached), then prints epoch time, Recall@20/NDCG@20 on valid and test under
the usual protocol (train items masked, mean over users), the same numbers under XRec's own
protocol (no masking, mean over interaction rows; METHODS §3.1) and a popularity baseline.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from whyrec.config import LightGCNConfig
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.safe_pickle import safe_load_pickle
from whyrec.encoders.artifact import load_encoder
from whyrec.encoders.train import train_encoder
from whyrec.eval.ranking import ground_truth_sets, ndcg_at_k, recall_at_k, topk_from_scores

REPO = Path(__file__).resolve().parents[1]


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
    args = p.parse_args()

    data = build_dataset(args.shared / "xrec-amazon", args.out / "data")
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
