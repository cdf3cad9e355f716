"""GaVaMoE served: the stage-1 VAE ranks, the cluster-routed mixture of experts explains.

GaVaMoE has no recommender of its own; its VAE decodes a (user, item) pair's latent into a
distribution over the five rating classes (or observed / not, without ratings). Ranked by that
distribution's expectation (E[r] = sum_k p_k * k; P(observed)), from the posterior mean mu, the
same deterministic latent the clusters use, over the items the user has no training pair with; their valid/test pairs are left
out too unless the caller keeps them (`recommend_for(..., exclude="train")`, as evaluation ranks).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from whyrec.config import GenerationConfig, generation_fingerprint
from whyrec.data import schema as S
from whyrec.methods.catalog import (
    Catalog,
    Pair,
    Unsupported,
    dataset_label,
    held_out_lists,
    interactions_of,
    revision,
    top_unseen,
)
from whyrec.methods.cf_ablation import CF_KINDS, check_kind, perturbed_embedding, swapped


class GaVaMoEModel:
    cold_start = False
    progress = False  # progress lines while explaining (whyrec.runs.Run turns them on for long jobs)
    cf_ablations = CF_KINDS  # the prompt holds no profile text (title, mood and item facts only)

    def __init__(self, folder: Path, device: str = "auto", generation: GenerationConfig | None = None):
        import torch

        from whyrec.methods.gavamoe.artifact import load_gavamoe

        self.folder, self.gen, self.torch = folder, generation or GenerationConfig(), torch
        # The LLM loads on the first explanation: ranking, ids and titles need only the VAE.
        self.explainer = load_gavamoe(str(folder), device, lazy=True)
        self.vae, meta = self.explainer.encoder, self.explainer.meta
        self.idx2item = sorted(self.vae.item2idx, key=self.vae.item2idx.__getitem__)
        self.seen, self.held = self._known_pairs(folder)
        vae_weights = f"{meta['vae']}/model.safetensors" if meta["vae"] == "vae" else meta["vae"]
        files = ["config.json", "adapter_model.safetensors", vae_weights, "items.parquet", "pairs.parquet"]
        self.revision = revision(folder, files, repr(sorted(generation_fingerprint(self.gen).items())))
        self.catalog = Catalog(list(self.vae.user2idx), self.idx2item, self.explainer.titles,
                               history_of=lambda u: [i for i in self.seen.get(u, []) if i in self.vae.item2idx],
                               held_out_of=lambda u: self.held.get(u, []))

    def _known_pairs(self, folder: Path) -> tuple[dict, dict]:
        """({user: training items}, {user: valid/test items}) of pairs.parquet; a folder saved before it
        kept each pair's split takes the splits from its dataset folder (else all pairs count as training)."""
        splits = self.explainer.splits
        if splits is None:
            by_user = interactions_of(folder, "every known pair is excluded, also with include_held_out") or {}
            held = {(u, i) for u, h in held_out_lists(by_user).items() for i in h}
            splits = {key: S.VALID if key in held else S.TRAIN for key in self.explainer.ratings}
        seen: dict[str, list[str]] = {}
        held_out: dict[str, list[str]] = {}
        for (user, item), split in splits.items():
            (seen if split == S.TRAIN else held_out).setdefault(user, []).append(item)
        return seen, held_out

    def scores(self, user: str):
        """The VAE decoder's score [I] of `user` with every item: the expected rating (ratings 1..5), or
        P(observed) for a VAE trained on interactions alone."""
        torch, model = self.torch, self.vae.model
        items = torch.arange(len(self.idx2item), device=model.mu_c.device)
        users = torch.full_like(items, self.vae.user2idx[user])
        with torch.inference_mode():
            mu, _ = model.encode(users, items)  # [I, L]
            return model.score(mu).cpu()

    def recommend(self, user: str, k: int) -> list[dict]:
        seen = [self.vae.item2idx[i] for i in self.catalog.history(user)]
        idx, vals = top_unseen(self.torch, self.scores(user), seen, k)
        return self.catalog.rows([self.idx2item[i] for i in idx], vals)

    def recommend_cold(self, liked, k):
        raise Unsupported("GaVaMoE serves only its trained users")  # the app checks cold_start first

    def explain(self, pairs: list[Pair]) -> list[str]:
        with self.torch.inference_mode():
            return self.explainer.explain([p.user for p in pairs], [p.item for p in pairs], self.gen, progress=self.progress)

    @property
    def explain_stream(self):
        """The server's continuous batching (`whyrec.serve.continuous`): `stream(pull, deliver,
        on_prefill)` explains the (key, Pair) rows `pull(free_slots)` hands over while it decodes, each
        row gated by its own pair's cluster (`decode.py`). None when the generation settings need HF
        generate (beam search, drop_finished off)."""
        return self._stream if self.gen.drop_finished and self.gen.num_beams == 1 else None

    def _stream(self, pull, deliver, on_prefill=None) -> None:
        from whyrec.methods.gavamoe.decode import stream

        ex = self.explainer

        def rows(free: int) -> list:
            out = []
            for key, pair in pull(free):
                try:
                    user_vec, item_vec, cluster = ex.inputs([pair.user], [pair.item])
                    out.append((key, ex.prompts([pair.user], [pair.item])[0], user_vec[0], item_vec[0], int(cluster[0])))
                except Exception as e:  # noqa: BLE001 - this request alone fails (e.g. an unknown id)
                    deliver(key, e)
            return out

        with self.torch.inference_mode():
            stream(ex.module, rows, deliver, self.gen, on_prefill)

    @contextmanager
    def cf_ablation(self, kind: str, seed: int = 0):
        """Explanations inside the block use a perturbed CF input (`whyrec.methods.cf_ablation`).

        The VAE's user/item ID embedding tables are replaced: rows deranged (`shuffle-users`,
        `shuffle-items`), Gaussian rows (`random`), or zeroed (`no-cf`: the <USER_VEC>/<ITEM_VEC>
        tokens stay and carry only the projections' biases). Both the vectors projected into the
        prompt and the pair's cluster (hence the experts' routing) come from these tables, so a
        shuffled pair is explained wholly as the other user's (or item's), and under `no-cf` every
        pair routes by the cluster of the all-zero pair. Ranking inside the block uses the same
        tables; the original tables are put back when it ends."""
        check_kind(kind, self.cf_ablations, "GaVaMoE")
        vae = self.vae.model
        with swapped(vae.user_emb, weight=perturbed_embedding(vae.user_emb, "user", kind, seed)), \
                swapped(vae.item_emb, weight=perturbed_embedding(vae.item_emb, "item", kind, seed)):
            yield

    def info(self) -> dict:
        meta = self.explainer.meta
        return {"method": "gavamoe", "backbone": meta["model"].get("name_or_path"),
                "dataset": dataset_label(self.folder, meta), "steps": meta.get("steps"), "revision": self.revision,
                "n_users": len(self.vae.user2idx), "n_items": len(self.idx2item), "encoder": "vae_gmm",
                "encoder_dim": self.vae.dim, "n_clusters": self.vae.n_clusters, "training": meta.get("train", {}),
                "method_config": meta.get("gavamoe", {}),
                "recommends": ("the stage-1 VAE's P(observed | mu) for (user, item) (trained without ratings), "
                               if self.vae.config.feedback == "interactions" else
                               "the stage-1 VAE's expected rating E[r] = sum_k p(r=k|mu) k for (user, item), ")
                              + "over items the user has no training pair with (nor a valid/test one unless "
                              "include_held_out); GaVaMoE itself only explains",
                "explains": "GaVaMoE: the LLM with the pair's VAE vectors and experts routed by the pair's cluster",
                "cold_start": False, "generation": asdict(self.gen), "folder": str(self.folder)}
