"""Save and load GaVaMoE stage 2 as one self-contained folder (METHODS §4.2-4.5).

    gavamoe/
      config.json               method "gavamoe", model/gavamoe/train configs, VAE dim and K
      adapter_model.safetensors experts, routers, projections, LoRA
      vae/                      copy of the stage-1 VAE-GMM artifact (vectors, clusters, id maps)
      items.parquet             item titles for the prompt, and the facts slot's text (`facts`) when
                                item_facts is on (computed once at training from the catalogue and training split)
      pairs.parquet             known (user, item) ratings [and features] for the prompt's mood, and each
                                pair's split (serving leaves valid/test items out of recommendations)
      README.md run_config.json training_log.json

Cluster ids come from the VAE's most likely cluster (`sample=False`): the original sampled
z and added pi_c instead of log pi_c, so its ids were random from run to run (§4.8, item 7).
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from whyrec._version import __version__
from whyrec.config import GenerationConfig, ModelConfig, TrainConfig
from whyrec.data import schema as S
from whyrec.llm.continuous_rows import continuous
from whyrec.methods.common import saved_configs
from whyrec.methods.gavamoe.model import GaVaMoE, GaVaMoEConfig
from whyrec.outputs import MARKER
from whyrec.progress import progress as progress_bar
from whyrec.utils import WhyrecError, atomic_path, read_json, write_json

ARTIFACT_FILES = ("config.json", "adapter_model.safetensors", "items.parquet", "pairs.parquet")
FACTS = "facts"  # items.parquet column: the item facts slot (`whyrec.data.item_facts`), when item_facts is on


def _load_vae(path, device: str):
    from whyrec.encoders.vae_gmm import load_vae_gmm

    return load_vae_gmm(path, device)


class GaVaMoEExplainer:
    """A loaded GaVaMoE: module, VAE and prompt text. `.encoder` carries the id maps like XRec's."""

    def __init__(self, module: GaVaMoE | None, vae, titles: dict[str, str], pairs: pd.DataFrame, meta: dict,
                 build=None, facts: dict[str, str] | None = None):
        """`module` None: `build()` makes it on first use (the LLM takes seconds to load and ranking needs
        only the VAE); a lock keeps serve's worker thread and a request from building two. `facts`: each
        item's facts slot text (`item_facts_of`), read by the prompt only when the config's item_facts is on."""
        self._module, self._build, self._lock = module, build, threading.Lock()
        self.encoder, self.titles, self.meta, self.facts = vae, titles, meta, facts or {}
        keys = list(zip(pairs[S.USER].astype(str), pairs[S.ITEM].astype(str))) if len(pairs) else []
        col = lambda c: pairs[c].tolist() if c in pairs else [None] * len(keys)  # noqa: E731
        self.ratings, self.features = dict(zip(keys, col(S.RATING))), dict(zip(keys, col(S.FEATURE)))
        # each pair's split (None: a folder saved before pairs.parquet kept it)
        self.splits = dict(zip(keys, pairs[S.SPLIT].astype(str))) if S.SPLIT in pairs else None

    @property
    def module(self) -> GaVaMoE:
        if self._module is None:
            with self._lock:
                if self._module is None:
                    self._module = self._build()
        return self._module

    @property
    def module_loaded(self) -> bool:
        return self._module is not None

    def prompts(self, users: list[str], items: list[str], ratings=None, features=None) -> list[str]:
        """Ratings/features default to the known pair's (unknown pairs: positive mood, no feature)."""
        ratings = ratings if ratings is not None else [self.ratings.get(p) for p in zip(users, items)]
        features = features if features is not None else [self.features.get(p) for p in zip(users, items)]
        return [self.module.prompt(self.titles.get(i, i), r, f, facts=self.facts.get(i, ""))
                for i, r, f in zip(items, ratings, features)]

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
        if continuous(gen):
            return self._decode(prompts, user_vec, item_vec, clusters, gen, progress)
        order = sorted(range(len(prompts)), key=lambda k: len(prompts[k]))
        out = [""] * len(prompts)
        batches = [order[s:s + gen.batch_size] for s in range(0, len(order), gen.batch_size)]
        for b in progress_bar(batches, desc="explain", unit="batch", enabled=progress and len(batches) >= 2):
            enc = self.module.encode([prompts[k] for k in b], side="left")
            texts = self.module.generate(enc["input_ids"], enc["attention_mask"], user_vec[b], item_vec[b],
                                         clusters[b], gen)
            for k, t in zip(b, texts):
                out[k] = t
        return out

    def _decode(self, prompts: list[str], user_vec, item_vec, clusters, gen: GenerationConfig,
                progress: bool) -> list[str]:
        """All rows through the continuous decoder (`decode.decode_rows`): a finished row's slot goes to
        the next waiting one whatever its cluster, and the prompt prefix is prefilled once per cluster."""
        from whyrec.methods.gavamoe.decode import decode_rows

        module = self.module
        enc = module.encode(prompts, side="left")
        rows = [(ids[m.bool()].tolist(), user_vec[k], item_vec[k], int(clusters[k]))
                for k, (ids, m) in enumerate(zip(enc["input_ids"], enc["attention_mask"]))]
        with progress_bar(total=len(rows), desc="explain", unit="pair",
                          enabled=progress and len(rows) > 2 * gen.batch_size) as bar:
            new = decode_rows(module, rows, gen, on_row_done=lambda _: bar.update(1))
        return [module.tokenizer.decode(t, skip_special_tokens=True).strip() for t in new]


def item_facts_of(ds, cfg: GaVaMoEConfig) -> dict[str, str]:
    """{item: facts slot text} from the catalogue and the training split when `cfg.item_facts` is on (else
    empty), cut to whole parts within `max_prompt_words` so the prompt's own cut never halves a name."""
    if not cfg.item_facts:
        return {}
    from whyrec.data.item_facts import item_facts

    return item_facts(ds.items, ds.interactions, max_words=cfg.max_prompt_words)


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
    if cfg.item_facts:  # serving reads the text the model was trained with, not a recomputation
        items[FACTS] = [expl.facts.get(i, "") for i in expl.titles]
    pairs = pd.DataFrame({S.USER: [u for u, _ in expl.ratings], S.ITEM: [i for _, i in expl.ratings],
                          S.RATING: pd.to_numeric(pd.Series(list(expl.ratings.values()), dtype=object), errors="coerce")})
    if cfg.use_feature:
        pairs[S.FEATURE] = [expl.features.get(k) for k in expl.ratings]
    if expl.splits is not None:  # serving leaves a user's valid/test items out of their recommendations
        pairs[S.SPLIT] = [expl.splits.get(k, S.TRAIN) for k in expl.ratings]
    for name, frame in (("items", items), ("pairs", pairs)):
        with atomic_path(out_dir / f"{name}.parquet") as tmp:
            frame.to_parquet(tmp, index=False)
    write_json(out_dir / "training_log.json", log)
    write_json(out_dir / "config.json", {
        "method": "gavamoe", "model": asdict(model), "gavamoe": asdict(cfg), "train": asdict(train),
        "vae": vae_ref, "vae_dim": expl.encoder.dim, "n_clusters": expl.encoder.n_clusters, "dataset": dataset,
        "whyrec_version": __version__, "steps": log.get("steps"), "complete": True,
    })
    (out_dir / "README.md").write_text(model_card(out_dir, expl, model, cfg, train, log, dataset))


def model_card(out_dir: Path, expl: GaVaMoEExplainer, model: ModelConfig, cfg: GaVaMoEConfig, train: TrainConfig,
               log: dict, dataset: str = "") -> str:
    """README.md of a GaVaMoE folder: the variant (experts, routing, LoRA), backbone, data and training."""
    from whyrec.methods.catalog import recorded_data

    lora = cfg.lora
    tuned = (f"LoRA r={lora.r} (alpha {lora.alpha}, dropout {lora.dropout}, on {', '.join(lora.target_modules)})"
             if lora.enabled else "no LoRA (frozen backbone)")
    variant = f"GaVaMoE, {cfg.n_experts} experts (top-{cfg.top_k}), {tuned}"
    budget = f"max_steps {train.max_steps}" if train.max_steps else f"{train.epochs:g} epoch(s)"
    batch = f"{train.batch_tokens} tokens" if train.batch_tokens else train.batch_size
    vae = expl.encoder
    return "\n".join([
        f"# whyrec explainer: {variant}", "",
        "- method: GaVaMoE (Tang et al., 2024): a VAE with a Gaussian-mixture prior clusters (user, item) "
        "pairs; each cluster has its own router over MoE experts in the LLM's layers",
        f"- backbone: `{model.name_or_path}` ({model.dtype}); {tuned}",
        f"- stage 1: VAE-GMM, latent dim {vae.dim}, {vae.n_clusters} clusters (copied into vae/)",
        f"- data: {' '.join(x for x in (recorded_data(out_dir), f'({dataset})' if dataset else None) if x) or 'unknown'}, "
        f"{log.get('examples', '?')} training explanations; features in the prompt: {cfg.use_feature}; "
        f"item facts slot: {cfg.item_facts}",
        f"- training: {log.get('steps')} steps ({budget}), batch {batch} x {train.grad_accum_steps} "
        f"accumulation, lr {train.lr:g}, seed {train.seed}, {log.get('elapsed_s', '?')} s; "
        f"loss {log.get('first_loss')} -> {log.get('last_loss')}", "",
        f"Load with `whyrec.load_run('{out_dir.name}')` or `whyrec explain --run {out_dir.name} --user U --item I`.",
        "",
    ])


def load_gavamoe(path: str, device: str = "auto", lazy: bool = False) -> GaVaMoEExplainer:
    """Rebuild a saved GaVaMoE from its folder alone; `lazy`: the LLM is built on first use."""
    path = Path(path)
    missing = [f for f in ARTIFACT_FILES if not (path / f).exists()]
    if missing:
        raise WhyrecError(f"{path} is not a complete GaVaMoE folder (missing {', '.join(missing)}); "
                          "train one with train_gavamoe")
    meta = read_json(path / "config.json")
    model, cfg = saved_configs(meta, "gavamoe", GaVaMoEConfig, device)
    _usable(model.device)  # a bad --device fails now, also when the LLM is built later
    vae = _load_vae(path / meta["vae"], "cpu")
    build = lambda: _load_module(path, model, cfg, vae)  # noqa: E731
    items = pd.read_parquet(path / "items.parquet")
    titles = dict(zip(items[S.ITEM].astype(str), items[S.TITLE].fillna("").astype(str)))
    facts = dict(zip(items[S.ITEM].astype(str), items[FACTS].fillna("").astype(str))) if FACTS in items else {}
    return GaVaMoEExplainer(None if lazy else build(), vae, titles, pd.read_parquet(path / "pairs.parquet"), meta,
                            build=build, facts=facts)


def _load_module(path: Path, model: ModelConfig, cfg: GaVaMoEConfig, vae) -> GaVaMoE:
    from whyrec.folders import weights_fit

    with weights_fit(path):  # also when built lazily, after the method's load returned
        module = build_gavamoe(model, cfg, vae)
        weights = load_file(str(path / "adapter_model.safetensors"))
        trainable = {n for n, p in module.named_parameters() if p.requires_grad}
        bad = sorted(set(weights) - set(module.state_dict())) or sorted(trainable - set(weights))
        if bad:
            raise WhyrecError(f"{path}/adapter_model.safetensors does not match its config (e.g. {bad[0]})")
        module.load_state_dict(weights, strict=False)
    module.eval()
    return module


def _usable(device: str) -> None:
    from whyrec.llm.load import usable_device
    from whyrec.utils import resolve_device

    usable_device(resolve_device(device))
