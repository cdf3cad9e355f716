"""The served model: an explainer folder read once, answering the API's questions.

Known users are scored by the encoder's user embeddings. A cold-start user, given as the
items they liked, is placed at the mean of those items' embeddings: LightGCN's user
embedding is itself an aggregate of its neighbours' item embeddings, so the mean is the
closest no-training stand-in. The same vector feeds XRec's user adapter when such a user
asks for explanations, with a profile listing the liked titles.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

from whyrec.config import GenerationConfig


@dataclass(frozen=True)
class Pair:
    """One explanation job. `liked` is set (and `user` is a synthetic key) for cold-start users."""

    user: str
    item: str
    liked: tuple[str, ...] = ()


def cold_key(liked: list[str]) -> str:
    """Stable cache key of a cold-start user: the set of liked items."""
    return "cold:" + hashlib.sha256("\x1f".join(sorted(set(liked))).encode()).hexdigest()[:16]


class ServedModel:
    def __init__(self, folder: Path, device: str = "auto", generation: GenerationConfig | None = None):
        import torch

        from whyrec.explainer import load_explainer
        from whyrec.serve.cache import model_revision

        self.folder, self.gen = folder, generation or GenerationConfig()
        self.explainer = load_explainer(str(folder), device=device)
        self.enc = self.explainer.encoder
        self.idx2item = {v: k for k, v in self.enc.item2idx.items()}
        self.revision = model_revision(folder, repr(sorted(asdict(self.gen).items())))
        self.torch = torch
        self.generate_calls = 0

    # ---- lookups ------------------------------------------------------------------------
    def title(self, item: str) -> str:
        return self.explainer.titles.get(item) or item

    def history(self, user: str) -> list[str]:
        """The user's training items (what the encoder saw), in index order."""
        row = self.enc.user2idx[user]
        indptr = self.enc.train_csr.indptr
        return [self.idx2item[int(i)] for i in self.enc.train_csr.indices[indptr[row]:indptr[row + 1]]]

    def search_items(self, q: str, limit: int) -> list[str]:
        q = q.casefold().strip()
        exact = [i for i in self.enc.item2idx if i.casefold() == q]
        hits = [i for i in self.enc.item2idx if q in self.title(i).casefold() and i not in exact]
        return (exact + hits)[:limit]

    def search_users(self, q: str, limit: int) -> list[str]:
        q = q.casefold().strip()
        users = sorted(self.enc.user2idx, key=lambda u: (len(u), u))  # "1" before "10" before "100"
        exact = [u for u in users if u.casefold() == q]
        rest = [u for u in users if q in u.casefold() and u not in exact]
        if len(exact) + len(rest) < limit and q:  # then profile text ("nurse", "sci-fi")
            rest += [u for u in users if q in self.explainer.user_profiles.get(u, "").casefold()
                     and u not in exact and u not in rest]
        return (exact + rest)[:limit]

    # ---- recommendation -----------------------------------------------------------------
    def recommend(self, user: str, k: int) -> list[dict]:
        items, scores = self.enc.recommend(self.enc.user2idx[user], k)
        return [{"item": self.idx2item[i], "title": self.title(self.idx2item[i]), "score": round(float(s), 4)}
                for i, s in zip(items, scores)]

    def cold_vector(self, liked: list[str]):
        idx = [self.enc.item2idx[i] for i in liked]
        return self.enc.item_emb[idx].mean(0)  # [d]

    def recommend_cold(self, liked: list[str], k: int) -> list[dict]:
        scores = self.enc.item_emb @ self.cold_vector(liked)  # [I]
        seen = self.torch.tensor([self.enc.item2idx[i] for i in liked])
        scores = scores.index_fill(0, seen, float("-inf"))
        top = self.torch.topk(scores, min(k, self.enc.n_items - len(set(liked))))
        return [{"item": self.idx2item[i], "title": self.title(self.idx2item[i]), "score": round(float(s), 4)}
                for i, s in zip(top.indices.tolist(), top.values.tolist())]

    # ---- explanation (runs in the batcher's worker thread) ------------------------------
    def explain(self, pairs: list[Pair]) -> list[str]:
        """One generate pass per kind of user; the explainer batches by prompt length inside."""
        self.generate_calls += 1
        out = [""] * len(pairs)
        known = [n for n, p in enumerate(pairs) if not p.liked]
        cold = [n for n, p in enumerate(pairs) if p.liked]
        with self.torch.inference_mode():
            if known:
                texts = self.explainer.explain([pairs[n].user for n in known], [pairs[n].item for n in known],
                                               self.gen, progress=False)
                for n, t in zip(known, texts):
                    out[n] = t
            if cold:
                for n, t in zip(cold, self._explain_cold([pairs[n] for n in cold])):
                    out[n] = t
        return out

    def _explain_cold(self, pairs: list[Pair]) -> list[str]:
        ex, torch = self.explainer, self.torch
        module = ex.module
        prompts = [module.prompt(self.title(p.item), "Liked " + ", ".join(self.title(i) for i in p.liked[:10]),
                                 ex.item_profiles.get(p.item, "")) for p in pairs]
        user_vec = torch.stack([self.cold_vector(list(p.liked)) for p in pairs])
        item_vec = self.enc.item_emb[[self.enc.item2idx[p.item] for p in pairs]]
        enc = module.encode(prompts, side="left")
        return module.generate(enc["input_ids"], enc["attention_mask"], user_vec, item_vec, self.gen)

    def info(self) -> dict:
        cfg = self.explainer.meta
        return {"method": cfg.get("method"), "backbone": cfg.get("model", {}).get("name_or_path"),
                "dataset": cfg.get("dataset") or None, "steps": cfg.get("steps"), "revision": self.revision,
                "n_users": self.enc.n_users, "n_items": self.enc.n_items, "encoder": self.enc.config.get("encoder"),
                "encoder_dim": self.enc.dim, "training": cfg.get("train", {}), "method_config": cfg.get("xrec", {}),
                "generation": asdict(self.gen), "folder": str(self.folder)}
