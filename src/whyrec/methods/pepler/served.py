"""PEPLER served: the LM with its ID (or feature-word) prompt explains given (user, item) pairs.

Only the `reg` variant has a recommender, its rating head (MF dot product or MLP over the ID
prompts), clipped to the training data's rating range; `continuous` and `discrete` learned no
scores, so their recommendations answer 409. A PEPLER folder keeps no titles or interactions
(only id maps and each id's training feature words), so titles are the ids, a user's profile
is their feature words, and the history excluded from `reg`'s ranking comes from the dataset
folder its run_config.json names (none is excluded when it names none).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from whyrec.config import GenerationConfig
from whyrec.data import schema as S
from whyrec.methods.catalog import (
    Catalog,
    Pair,
    Unsupported,
    dataset_label,
    held_out_lists,
    interactions_of,
    recorded_data,
    revision,
    top_unseen,
)
from whyrec.methods.cf_ablation import CF_KINDS, check_kind, perturbed_embedding, swapped
from whyrec.methods.pepler.model import discrete_prompt

NO_RECOMMENDER = "this PEPLER variant explains given pairs only; use POST /explain"


class PEPLERModel:
    cold_start = False

    def __init__(self, folder: Path, device: str = "auto", generation: GenerationConfig | None = None):
        import torch

        from whyrec.methods.pepler.artifact import load_pepler_run

        self.folder, self.gen, self.torch = folder, generation or GenerationConfig(), torch
        self.module, self.cfg = load_pepler_run(folder, device)
        self.user2idx, self.item2idx = self.cfg["user2idx"], self.cfg["item2idx"]
        self.idx2item = sorted(self.item2idx, key=self.item2idx.__getitem__)
        feats = self.cfg.get("features") or {}
        self.feats = {kind: feats.get(kind, {}) for kind in ("user", "item")}
        files = ["config.json", "prompt.safetensors"] + [f"lm/{p.name}" for p in sorted((folder / "lm").glob("*"))
                                                         if p.is_file()]
        # PEPLER decodes `words` tokens greedily (other --generation.* fields are refused) and batch_size
        # only groups pairs, as the server's batches always did: only its own files count.
        self.revision = revision(folder, files)
        describe = lambda words: "features: " + ", ".join(words) if words else ""  # noqa: E731
        # The folder keeps no interactions: the dataset folder its run_config.json names (if it does)
        # gives each user's training items (excluded by `reg`'s ranking) and valid/test items.
        by_user = interactions_of(folder) if recorded_data(folder) else None
        self.known = by_user is not None
        train = {u: splits.get(S.TRAIN, []) for u, splits in (by_user or {}).items()}
        held = held_out_lists(by_user)
        self.catalog = Catalog(list(self.user2idx), self.idx2item,
                               user_profiles={u: describe(w) for u, w in self.feats["user"].items()},
                               item_profiles={i: describe(w) for i, w in self.feats["item"].items()},
                               history_of=lambda u: [i for i in train.get(u, []) if i in self.item2idx],
                               held_out_of=lambda u: held.get(u, []))

    @property
    def variant(self) -> str:
        return self.module.cfg.variant

    @property
    def cf_ablations(self) -> tuple[str, ...]:
        """The soft-prompt variants' ID vectors are their CF input; `discrete` has only feature words."""
        return ("no-profiles",) if self.variant == "discrete" else CF_KINDS

    @contextmanager
    def cf_ablation(self, kind: str, seed: int = 0):
        """Explanations inside the block use a perturbed input (`whyrec.methods.cf_ablation`).

        `continuous`/`reg`: the user/item ID embeddings prepended as the continuous prompt are
        replaced: rows deranged (`shuffle-users`, `shuffle-items`), Gaussian rows (`random`), or
        zeroed (`no-cf`: the two prompt positions stay, as zero vectors). `discrete`: `no-profiles`
        leaves out the feature-word prompt (decoding starts from <bos> alone). `reg`'s ratings inside
        the block use the same tables; everything is put back when it ends."""
        check_kind(kind, self.cf_ablations, f"PEPLER ({self.variant})")
        if kind == "no-profiles":
            with swapped(self, feats={"user": {}, "item": {}}):
                yield
            return
        module = self.module
        with swapped(module.user_emb, weight=perturbed_embedding(module.user_emb, "user", kind, seed)), \
                swapped(module.item_emb, weight=perturbed_embedding(module.item_emb, "item", kind, seed)):
            yield

    def recommend(self, user: str, k: int) -> list[dict]:
        if self.variant != "reg":
            raise Unsupported(NO_RECOMMENDER)
        torch = self.torch
        items = torch.arange(len(self.idx2item))
        with torch.inference_mode():
            scores = self.module.predict_rating(torch.full_like(items, self.user2idx[user]), items).float().cpu()
        low, high = self.cfg.get("rating_range") or (float("-inf"), float("inf"))
        seen = [self.item2idx[i] for i in self.catalog.history(user)]
        idx, vals = top_unseen(torch, scores, seen, k)  # ranked unclipped; shown clipped like PEPLER's RMSE
        return self.catalog.rows([self.idx2item[i] for i in idx], torch.tensor(vals).clamp(low, high).tolist())

    def recommend_cold(self, liked, k):
        raise Unsupported("PEPLER serves only its trained users")  # the app checks cold_start first

    def explain(self, pairs: list[Pair]) -> list[str]:
        """Explanations in batches of `gen.batch_size`; `gen` may have been replaced since loading
        (`whyrec.runs.Run` swaps it per call), so it is checked here, where it is used."""
        from whyrec.methods.base import check_generation
        from whyrec.methods.pepler.method import METHOD

        check_generation(METHOD, self.gen)
        size = self.gen.batch_size
        return [text for s in range(0, len(pairs), size) for text in self._explain(pairs[s:s + size])]

    def _explain(self, pairs: list[Pair]) -> list[str]:
        torch, module = self.torch, self.module
        users = torch.tensor([self.user2idx[p.user] for p in pairs])
        items = torch.tensor([self.item2idx[p.item] for p in pairs])
        prompts = [[] for _ in pairs]
        if self.variant == "discrete":
            prompts = [module.feature_ids(discrete_prompt(set(self.feats["user"].get(p.user, [])),
                                                          set(self.feats["item"].get(p.item, [])),
                                                          module.cfg.discrete_dedup)) for p in pairs]
        with torch.inference_mode():
            return [module.decode(ids) for ids in module.generate_ids(users, items, prompts)]

    def info(self) -> dict:
        cfg = self.cfg
        excluded = ("the user's training items excluded (and valid/test ones unless include_held_out), from "
                    "the dataset folder" if self.known else "no history in the folder, so rated items are not excluded")
        recommends = (f"the reg variant's rating head (predicted rating, clipped to the data's range); {excluded}"
                      if self.variant == "reg" else NO_RECOMMENDER)
        return {"method": "pepler", "variant": self.variant, "backbone": cfg["model"].get("name_or_path"),
                "dataset": dataset_label(self.folder, cfg), "steps": None, "revision": self.revision,
                "n_users": len(self.user2idx), "n_items": len(self.idx2item), "encoder": None, "encoder_dim": None,
                "training": cfg.get("train", {}), "method_config": cfg.get("pepler", {}),
                "recommends": recommends,
                "explains": f"PEPLER ({self.variant}): greedy, at most {self.module.cfg.words} tokens "
                            "(its own decoding; of --generation only batch_size applies)",
                "cold_start": False, "generation": {"max_new_tokens": self.module.cfg.words, "do_sample": False,
                                                    "batch_size": self.gen.batch_size},
                "folder": str(self.folder)}
