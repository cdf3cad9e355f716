"""Non-LLM baselines on RecAlpaca's 200 test users, scored exactly like the LLM's output.

- `prompt-order`: the top-1 followed by the next candidates as the prompt lists them, i.e.
  what an LLM that only copied the list would answer; it shows what the LLM adds.
- `lightgcn`: top-k of a LightGCN encoder trained without the test users' testGT titles
  (`whyrec data instructions` trains one), training items masked.
- `popularity`: the k most-rated items of the same training interactions the user has not seen.

Titles go through RecAlpaca's own cleaning (`clean_recalpaca_title`) before exact matching,
the same treatment the model's parsed titles get.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from whyrec.eval.titles import candidates_from_prompt, clean_recalpaca_title
from whyrec.eval.topk import score_ranked
from whyrec.utils import WhyrecError, read_json


def prompt_order_titles(record: dict, k: int = 5) -> list[str]:
    """The record's top-1, then its other candidates in the order the prompt lists them."""
    cands = candidates_from_prompt(record.get("input", ""))
    top1 = str(record.get("top1") or (cands[0] if cands else "")).strip("'\" ")
    ordered = [top1] + [c for c in cands if c != top1] if top1 else cands
    return ordered[:k]


def encoder_titles(encoder, users: list[str], titles: dict[str, str], k: int = 5,
                   popularity: bool = False) -> list[list[str]]:
    """Top-k titles per user from the encoder's scores, or by training popularity."""
    idx2item = {v: key for key, v in encoder.item2idx.items()}
    counts = np.asarray(encoder.train_csr.sum(axis=0)).ravel()
    by_count = np.argsort(-counts, kind="stable")
    out = []
    for user in users:
        row = encoder.user_index(user)
        if popularity:
            indptr = encoder.train_csr.indptr
            seen = set(encoder.train_csr.indices[indptr[row]:indptr[row + 1]].tolist())
            top = [int(i) for i in by_count if int(i) not in seen][:k]
        else:
            top = encoder.recommend(row, k=k)[0]
        out.append([titles.get(idx2item[i], idx2item[i]) for i in top])
    return out


def recalpaca_baselines(test_json: str | Path, encoder_dir: str | Path | None = None, k: int = 5,
                        data=None, max_users: int | None = None) -> dict[str, dict]:
    """`{name: metrics}` for prompt-order and, with an encoder, LightGCN and popularity, over the
    file's first `max_users` rows (all by default: the rows a generation run scored)."""
    rows = read_json(test_json)
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "testGT" in r for r in rows):
        raise WhyrecError(f"{test_json} is not a RecAlpaca test file (a JSON list of rows with testGT)")
    rows = rows[:max_users] if max_users else rows
    truth = [r["testGT"] for r in rows]

    def score(ranked: list[list[str]], label: str) -> dict:
        return score_ranked([[clean_recalpaca_title(t) for t in ts] for ts in ranked], truth, k, label=label)[0]

    results = {"prompt-order": score([prompt_order_titles(r, k) for r in rows], "prompt-order")}
    if encoder_dir is None:
        return results
    from whyrec.data import schema as S
    from whyrec.encoders.artifact import load_encoder
    from whyrec.methods.recalpaca.instructions.testusers import match_test_users
    from whyrec.methods.recalpaca.instructions.titles import short_title

    if data is None:
        from whyrec.data.movielens import load_ml100k

        data = load_ml100k(metadata=False)
    users = [m["user"] for m in match_test_users(test_json, data).rows][:len(rows)]
    titles = {str(i): short_title(t) for i, t in zip(data.items[S.ITEM], data.items[S.TITLE], strict=True)}
    encoder = load_encoder(encoder_dir)
    results["lightgcn"] = score(encoder_titles(encoder, users, titles, k), "lightgcn")
    results["popularity"] = score(encoder_titles(encoder, users, titles, k, popularity=True), "popularity")
    return results


def write_topk_report(out: str | Path, systems: dict[str, dict], k: int = 5) -> None:
    """out/baselines.json and out/report.md: one row per system with RecAlpaca's metrics."""
    from whyrec.utils import write_json, write_text

    names = [f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"ndcg@{k}_ordered"]
    lines = ["| system | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += ["| " + name + " | " + " | ".join(f"{m[n]:.4f}" for n in names) + " |" for name, m in systems.items()]
    note = (f"\n`ndcg@{k}` averages RecAlpaca's NDCG over every order of each user's titles (the original's "
            f"depends on the hash seed); `ndcg@{k}_ordered` keeps the listed order.\n")
    write_json(Path(out) / "baselines.json", systems)
    write_text(Path(out) / "report.md", "\n".join(lines) + "\n" + note)
