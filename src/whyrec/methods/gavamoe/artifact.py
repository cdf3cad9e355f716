"""Save and load GaVaMoE stage 2 as one self-contained folder (METHODS §4.2-4.5).

    gavamoe/
      config.json               method "gavamoe", model/gavamoe/train configs, VAE dim and K
      adapter_model.safetensors experts, routers, projections, LoRA
      vae/                      copy of the stage-1 VAE-GMM artifact (vectors, clusters, id maps)
      items.parquet             item titles for the prompt
      pairs.parquet             known (user, item) ratings [and features] for the prompt's mood
      README.md run_config.json training_log.json

Cluster ids come from the VAE's most likely cluster (`sample=False`): the original sampled
z and added pi_c instead of log pi_c, so its ids were random from run to run (§4.8, item 7).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from whyrec._version import __version__
from whyrec.config import GenerationConfig, LoraConfig, ModelConfig, TrainConfig
from whyrec.data import schema as S
from whyrec.methods.gavamoe.model import GaVaMoE, GaVaMoEConfig
from whyrec.outputs import MARKER
from whyrec.utils import WhyrecError, atomic_path, read_json, write_json

ARTIFACT_FILES = ("config.json", "adapter_model.safetensors", "items.parquet", "pairs.parquet")


def _load_vae(path, device: str):
    from whyrec.encoders.vae_gmm import load_vae_gmm

    return load_vae_gmm(path, device)


class GaVaMoEExplainer:
    """A loaded GaVaMoE: module, VAE and prompt text. `.encoder` carries the id maps like XRec's."""

    def __init__(self, module: GaVaMoE, vae, titles: dict[str, str], pairs: pd.DataFrame, meta: dict):
        self.module, self.encoder, self.titles, self.meta = module, vae, titles, meta
        keys = list(zip(pairs[S.USER].astype(str), pairs[S.ITEM].astype(str))) if len(pairs) else []
        col = lambda c: pairs[c].tolist() if c in pairs else [None] * len(keys)  # noqa: E731
        self.ratings, self.features = dict(zip(keys, col(S.RATING))), dict(zip(keys, col(S.FEATURE)))

    def prompts(self, users: list[str], items: list[str], ratings=None, features=None) -> list[str]:
        """Ratings/features default to the known pair's (unknown pairs: positive mood, no feature)."""
        ratings = ratings if ratings is not None else [self.ratings.get(p) for p in zip(users, items)]
        features = features if features is not None else [self.features.get(p) for p in zip(users, items)]
        return [self.module.prompt(self.titles.get(i, i), r, f) for i, r, f in zip(items, ratings, features)]

    def inputs(self, users: list[str], items: list[str]):
        """(user_vec, item_vec, cluster_ids) from the VAE, on the CPU."""
        for ids, known, kind in ((users, self.encoder.user2idx, "user"), (items, self.encoder.item2idx, "item")):
            unknown = next((x for x in ids if x not in known), None)
            if unknown is not None:
                raise WhyrecError(f"unknown {kind} id {unknown!r}; the VAE knows {len(known)} {kind}s")
        with torch.no_grad():
            u, i = self.encoder.vectors(users, items)
            c = self.encoder.cluster(users, items, sample=False)
        return u.detach().float().cpu(), i.detach().float().cpu(), torch.as_tensor(c).long().cpu()

    def explain(self, users: list[str], items: list[str], gen: GenerationConfig | None = None,
                progress: bool = True, ratings=None, features=None) -> list[str]:
        """One explanation per (user, item), batched by prompt length (same call as XRec's Explainer)."""
        gen = gen or GenerationConfig()
        users, items = [str(u) for u in users], [str(i) for i in items]
        user_vec, item_vec, clusters = self.inputs(users, items)
        prompts = self.prompts(users, items, ratings, features)
        order = sorted(range(len(prompts)), key=lambda k: len(prompts[k]))
        out = [""] * len(prompts)
        batches = [order[s:s + gen.batch_size] for s in range(0, len(order), gen.batch_size)]
        for b in tqdm(batches, desc="explain", unit="batch", disable=not progress or len(batches) < 2):
            enc = self.module.encode([prompts[k] for k in b], side="left")
            texts = self.module.generate(enc["input_ids"], enc["attention_mask"], user_vec[b], item_vec[b],
                                         clusters[b], gen)
            for k, t in zip(b, texts):
                out[k] = t
        return out


def build_gavamoe(model: ModelConfig, cfg: GaVaMoEConfig, vae) -> GaVaMoE:
    from whyrec.llm.load import load_model

    llm, tok = load_model(model)
    return GaVaMoE(llm, tok, vae.dim, vae.n_clusters, cfg)


def save_gavamoe(out_dir: Path, expl: GaVaMoEExplainer, vae_path: str, model: ModelConfig, cfg: GaVaMoEConfig,
                 train: TrainConfig, log: dict, dataset: str = "") -> None:
    """Write the folder described in the module docstring (atomic file by file, config.json last)."""
    from whyrec.llm.trainer import trainable_state

    out_dir = Path(out_dir)
    with atomic_path(out_dir / "adapter_model.safetensors") as tmp:
        save_file(trainable_state(expl.module), str(tmp))
    src, dst = Path(vae_path), out_dir / "vae"
    if src.resolve() != dst.resolve():
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoint*", MARKER))
        else:
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / src.name)
    vae_ref = "vae" if src.is_dir() else f"vae/{src.name}"
    items = pd.DataFrame({S.ITEM: list(expl.titles), S.TITLE: list(expl.titles.values())})
    pairs = pd.DataFrame({S.USER: [u for u, _ in expl.ratings], S.ITEM: [i for _, i in expl.ratings],
                          S.RATING: pd.to_numeric(pd.Series(list(expl.ratings.values()), dtype=object), errors="coerce")})
    if cfg.use_feature:
        pairs[S.FEATURE] = [expl.features.get(k) for k in expl.ratings]
    for name, frame in (("items", items), ("pairs", pairs)):
        with atomic_path(out_dir / f"{name}.parquet") as tmp:
            frame.to_parquet(tmp, index=False)
    write_json(out_dir / "training_log.json", log)
    write_json(out_dir / "config.json", {
        "method": "gavamoe", "model": asdict(model), "gavamoe": asdict(cfg), "train": asdict(train),
        "vae": vae_ref, "vae_dim": expl.encoder.dim, "n_clusters": expl.encoder.n_clusters, "dataset": dataset,
        "whyrec_version": __version__, "steps": log.get("steps"), "complete": True,
    })
    (out_dir / "README.md").write_text(
        f"# whyrec GaVaMoE explainer\n\nBackbone `{model.name_or_path}`, {cfg.n_experts} experts (top-{cfg.top_k}) "
        f"routed by {expl.encoder.n_clusters} VAE clusters; trained {log.get('steps')} steps, loss "
        f"{log.get('first_loss')} -> {log.get('last_loss')}.\n"
    )


def load_gavamoe(path: str, device: str = "auto") -> GaVaMoEExplainer:
    """Rebuild a saved GaVaMoE from its folder alone."""
    path = Path(path)
    missing = [f for f in ARTIFACT_FILES if not (path / f).exists()]
    if missing:
        raise WhyrecError(f"{path} is not a complete GaVaMoE folder (missing {', '.join(missing)}); "
                          "train one with train_gavamoe")
    meta = read_json(path / "config.json")
    model = ModelConfig(**meta["model"])
    model.device = device if device != "auto" else model.device
    cfg = GaVaMoEConfig(**{k: v for k, v in meta["gavamoe"].items() if k != "lora"})
    cfg.lora = LoraConfig(**meta["gavamoe"].get("lora", {}))
    vae = _load_vae(path / meta["vae"], "cpu")
    module = build_gavamoe(model, cfg, vae)
    weights = load_file(str(path / "adapter_model.safetensors"))
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    bad = sorted(set(weights) - set(module.state_dict())) or sorted(trainable - set(weights))
    if bad:
        raise WhyrecError(f"{path}/adapter_model.safetensors does not match its config (e.g. {bad[0]})")
    module.load_state_dict(weights, strict=False)
    module.eval()
    items = pd.read_parquet(path / "items.parquet")
    titles = dict(zip(items[S.ITEM].astype(str), items[S.TITLE].fillna("").astype(str)))
    return GaVaMoEExplainer(module, vae, titles, pd.read_parquet(path / "pairs.parquet"), meta)
