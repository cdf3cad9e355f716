"""XRec served: LightGCN recommends, the MoE-adapted LLM explains.

Known users are scored by the encoder's user embeddings. A cold-start user, given as the
items they liked, is placed at the mean of those items' embeddings: LightGCN's user
embedding is itself an aggregate of its neighbours' item embeddings, so the mean is the
closest no-training stand-in. The same vector feeds XRec's user adapter when such a user
asks for explanations, with a profile listing the liked titles.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from whyrec.config import GenerationConfig, generation_fingerprint
from whyrec.methods.catalog import (
    Catalog,
    Pair,
    dataset_label,
    held_out_lists,
    interactions_of,
    revision,
    top_unseen,
)
from whyrec.methods.cf_ablation import KINDS, check_kind, perturbed, swapped

FILES = ["config.json", "adapter_model.safetensors", "encoder/model.safetensors", "items.parquet", "users.parquet"]


class XRecModel:
    cold_start = True
    progress = False  # progress lines while explaining (whyrec.runs.Run turns them on for long jobs)
    cf_ablations = KINDS

    def __init__(self, folder: Path, device: str = "auto", generation: GenerationConfig | None = None):
        import torch

        from whyrec.methods.xrec.artifact import load_explainer

        self.folder, self.gen, self.torch = folder, generation or GenerationConfig(), torch
        # The LLM loads on the first explanation: ranking, ids and titles need only the encoder.
        self.explainer = load_explainer(str(folder), device=device, lazy=True)
        self.enc = self.explainer.encoder
        self.idx2item = {v: k for k, v in self.enc.item2idx.items()}
        self.revision = revision(folder, FILES, repr(sorted(generation_fingerprint(self.gen).items())))
        held = self.explainer.held_out
        if held is None:  # saved before folders kept them: the dataset folder it was trained on knows
            held = held_out_lists(interactions_of(folder))
        self.catalog = Catalog(list(self.enc.user2idx), list(self.enc.item2idx), self.explainer.titles,
                               self.explainer.user_profiles, self.explainer.item_profiles, self._history,
                               held_out_of=lambda user: held.get(user, []))
        self.generate_calls = 0

    def _history(self, user: str) -> list[str]:
        """The user's training items (what the encoder saw), in index order."""
        row, indptr = self.enc.user2idx[user], self.enc.train_csr.indptr
        return [self.idx2item[int(i)] for i in self.enc.train_csr.indices[indptr[row]:indptr[row + 1]]]

    def recommend(self, user: str, k: int) -> list[dict]:
        items, scores = self.enc.recommend(self.enc.user2idx[user], k)
        return self.catalog.rows([self.idx2item[i] for i in items], scores)

    def cold_vector(self, liked: list[str]):
        return self.enc.item_emb[[self.enc.item2idx[i] for i in liked]].mean(0)  # [d]

    def recommend_cold(self, liked: list[str], k: int) -> list[dict]:
        scores = self.enc.item_emb @ self.cold_vector(liked)  # [I]
        idx, vals = top_unseen(self.torch, scores, [self.enc.item2idx[i] for i in liked], k)
        return self.catalog.rows([self.idx2item[i] for i in idx], vals)

    def explain(self, pairs: list[Pair]) -> list[str]:
        """One generate pass per kind of user; the explainer batches by prompt length inside."""
        self.generate_calls += 1
        out = [""] * len(pairs)
        known = [n for n, p in enumerate(pairs) if not p.liked]
        cold = [n for n, p in enumerate(pairs) if p.liked]
        with self.torch.inference_mode():
            if known:
                texts = self.explainer.explain([pairs[n].user for n in known], [pairs[n].item for n in known],
                                               self.gen, progress=self.progress)
                for n, t in zip(known, texts):
                    out[n] = t
            if cold:
                for n, t in zip(cold, self._explain_cold([pairs[n] for n in cold])):
                    out[n] = t
        return out

    @property
    def explain_stream(self):
        """The server's continuous batching (`whyrec.serve.continuous`): `stream(pull, deliver,
        on_prefill)` explains the (key, Pair) rows `pull(free_slots)` hands over while it decodes.
        None when the generation settings need HF generate (beam search, drop_finished off)."""
        return self._stream if self.gen.drop_finished and self.gen.num_beams == 1 else None

    def _stream(self, pull, deliver, on_prefill=None) -> None:
        from whyrec.llm.continuous_rows import pull_rows, refusing
        from whyrec.methods.xrec.decode import stream

        admit = refusing(lambda key, pair: (key, *self._row(pair)), deliver)

        def rows(free: int) -> list:
            return pull_rows(pull, free, admit)

        self.generate_calls += 1
        with self.torch.inference_mode():
            stream(self.explainer.module, rows, deliver, self.gen, on_prefill)

    def _row(self, pair: Pair):
        """(prompt, user vector, item vector) of one pair, known or cold-start user."""
        ex = self.explainer
        if not pair.liked:
            user_vec, item_vec = ex.vectors([pair.user], [pair.item])
            return ex.prompts([pair.user], [pair.item])[0], user_vec[0], item_vec[0]
        title = self.catalog.title
        prompt = ex.module.prompt(title(pair.item), "Liked " + ", ".join(title(i) for i in pair.liked[:10]),
                                  ex.item_profiles.get(pair.item, ""), facts=ex.item_facts.get(pair.item, ""))
        return prompt, self.cold_vector(list(pair.liked)), self.enc.item_emb[self.enc.item2idx[pair.item]]

    def _explain_cold(self, pairs: list[Pair]) -> list[str]:
        ex, module, title = self.explainer, self.explainer.module, self.catalog.title
        prompts = [module.prompt(title(p.item), "Liked " + ", ".join(title(i) for i in p.liked[:10]),
                                 ex.item_profiles.get(p.item, ""), facts=ex.item_facts.get(p.item, "")) for p in pairs]
        user_vec = self.torch.stack([self.cold_vector(list(p.liked)) for p in pairs])
        item_vec = self.enc.item_emb[[self.enc.item2idx[p.item] for p in pairs]]
        enc = module.encode(prompts, side="left")
        return module.generate(enc["input_ids"], enc["attention_mask"], user_vec, item_vec, self.gen)

    @contextmanager
    def cf_ablation(self, kind: str, seed: int = 0):
        """Explanations inside the block use a perturbed CF input (`whyrec.methods.cf_ablation`).

        The LightGCN tables the adapters read are replaced: rows deranged (`shuffle-users`,
        `shuffle-items`), Gaussian rows (`random`, users and items), or zeroed (`no-cf`: the
        <USER_EMBED>/<ITEM_EMBED> tokens stay in the prompt and carry what the MoE adapters make of a
        zero vector, injected into q/k/v as usual). `no-profiles`: known users' prompts get no user or
        item profile (the prompt then says "unknown", as for a user or item without one). Ranking
        inside the block uses the same tables; everything is put back when it ends."""
        check_kind(kind, self.cf_ablations, "XRec")
        if kind == "no-profiles":
            target, values = self.explainer, {"user_profiles": {}, "item_profiles": {}}
        else:
            enc = self.enc
            target, values = enc, {"user_emb": perturbed(enc.user_emb, "user", kind, seed),
                                   "item_emb": perturbed(enc.item_emb, "item", kind, seed)}
        with swapped(target, **values):
            yield

    def info(self) -> dict:
        cfg = self.explainer.meta
        return {"method": cfg.get("method"), "backbone": cfg.get("model", {}).get("name_or_path"),
                "dataset": dataset_label(self.folder, cfg), "steps": cfg.get("steps"), "revision": self.revision,
                "n_users": self.enc.n_users, "n_items": self.enc.n_items, "encoder": self.enc.config.get("encoder"),
                "encoder_dim": self.enc.dim, "training": cfg.get("train", {}), "method_config": cfg.get("xrec", {}),
                "recommends": "LightGCN encoder: dot product of user and item embeddings, the user's training "
                              "items excluded (and their valid/test items unless include_held_out)",
                "explains": "XRec: the LLM with the encoder's user/item embeddings injected by the MoE adapter",
                "cold_start": True, "generation": asdict(self.gen), "folder": str(self.folder)}
