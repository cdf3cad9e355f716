"""Save, load and run an XRec explainer as one self-contained artifact folder.

An explainer folder is self-contained: it holds the method config, the trainable weights
(safetensors), a copy of the collaborative encoder and the item/user text used in prompts,
so `whyrec explain`/`recommend` and `whyrec.load_run` need nothing else.

    explainer/
      config.json               method, method config, backbone, encoder dim, steps
      adapter_model.safetensors trainable weights (adapters, k/v maps, LoRA if enabled)
      encoder/                  the LightGCN artifact (embeddings, id maps, train items)
      items.parquet users.parquet   prompt text; items.parquet has a `facts` column when
                                --xrec.item_facts is on; users.parquet also lists each user's
                                valid/test items (`held_out`), left out of their recommendations
      README.md run_config.json training_log.json
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from safetensors.torch import load_file, save_file

from whyrec._version import __version__
from whyrec.config import GenerationConfig, ModelConfig, XRecConfig
from whyrec.data import schema as S
from whyrec.outputs import MARKER, destination
from whyrec.progress import progress as progress_bar
from whyrec.utils import WhyrecError, atomic_path, read_json, write_json

ARTIFACT_FILES = ("config.json", "adapter_model.safetensors", "items.parquet", "users.parquet")
HELD_OUT = "held_out"  # users.parquet column: each user's valid/test items, excluded from recommendations
FACTS = "facts"  # items.parquet column: the item facts slot (`whyrec.data.item_facts`), when item_facts is on

# Rows handed to one continuous-decoding call, in batches: progress is reported per call.
CONTINUOUS_GROUPS = 8


class Explainer:
    """A loaded explainer: the method module, the encoder and the prompt text."""

    def __init__(self, module, encoder, items: pd.DataFrame, users: pd.DataFrame, meta: dict, build=None):
        """`module` None: `build()` makes it on first use (the LLM takes seconds to load and recommending
        needs only the encoder); a lock keeps serve's worker thread and a request from building two."""
        self._module, self._build, self._lock = module, build, threading.Lock()
        self.encoder, self.meta = encoder, meta
        self.titles = dict(zip(items[S.ITEM].astype(str), items.get(S.TITLE, items[S.ITEM]).fillna("").astype(str)))
        self.item_profiles = _text_map(items, S.ITEM, S.PROFILE)
        self.user_profiles = _text_map(users, S.USER, S.PROFILE)
        self.item_facts = _text_map(items, S.ITEM, FACTS)  # empty for folders saved without the slot
        self.held_out = ({str(u): [str(i) for i in items] for u, items in zip(users[S.USER], users[HELD_OUT])}
                         if users is not None and HELD_OUT in users else None)  # None: a folder saved before

    @property
    def module(self):
        if self._module is None:
            with self._lock:
                if self._module is None:
                    self._module = self._build()
        return self._module

    @property
    def module_loaded(self) -> bool:
        return self._module is not None

    def prompts(self, users: list[str], items: list[str]) -> list[str]:
        return [self.module.prompt(self.titles.get(i, i), self.user_profiles.get(u, ""), self.item_profiles.get(i, ""),
                                   facts=self.item_facts.get(i, "")) for u, i in zip(users, items)]

    def vectors(self, users: list[str], items: list[str]):
        enc = self.encoder
        u_idx = [_index(enc.user2idx, u, "user") for u in users]
        i_idx = [_index(enc.item2idx, i, "item") for i in items]
        return enc.user_emb[u_idx], enc.item_emb[i_idx]

    def explain(self, users: list[str], items: list[str], gen: GenerationConfig | None = None,
                progress: bool = True) -> list[str]:
        """Generate one explanation per (user, item), batched by prompt length."""
        gen = gen or GenerationConfig()
        users, items = [str(u) for u in users], [str(i) for i in items]
        user_vec, item_vec = self.vectors(users, items)
        prompts = self.prompts(users, items)
        order = sorted(range(len(prompts)), key=lambda k: len(prompts[k]))
        out: list[str] = [""] * len(prompts)
        # The continuous decoder keeps gen.batch_size rows decoding and refills freed slots itself, so
        # it gets many rows per call; HF generate (beams, drop_finished off) decodes whole batches.
        continuous = gen.drop_finished and gen.num_beams == 1
        size = gen.batch_size * (CONTINUOUS_GROUPS if continuous else 1)
        batches = [order[s:s + size] for s in range(0, len(order), size)]
        for b in progress_bar(batches, desc="explain", unit="batch", enabled=progress and len(batches) >= 2):
            enc = self.module.encode([prompts[k] for k in b], side="left")
            texts = self.module.generate(enc["input_ids"], enc["attention_mask"], user_vec[b], item_vec[b], gen)
            for k, t in zip(b, texts):
                out[k] = t
        return out


def _text_map(frame: pd.DataFrame, key: str, col: str) -> dict[str, str]:
    if frame is None or col not in frame:
        return {}
    return dict(zip(frame[key].astype(str), frame[col].fillna("").astype(str)))


def _index(mapping: dict, key: str, kind: str) -> int:
    try:
        return mapping[key]
    except KeyError:
        raise WhyrecError(f"unknown {kind} id {key!r} ({len(mapping)} {kind}s known, e.g. {next(iter(mapping))!r})") from None


def build_module(method: str, model_cfg: ModelConfig, method_cfg: XRecConfig, encoder_dim: int):
    from whyrec.llm.load import load_model
    from whyrec.methods.xrec.model import XRec

    if method != "xrec":  # config.json's "method"; the registry's entry is the method object, not the module
        raise WhyrecError(f"{method!r} is not an XRec explainer (config.json \"method\" must be \"xrec\")")
    llm, tok = load_model(model_cfg)
    return XRec(llm, tok, encoder_dim, method_cfg)


def items_table(ds, xrec: XRecConfig) -> pd.DataFrame:
    """items.parquet: the item columns prompts read, plus the facts slot's text (from the catalogue and
    the training split only) when `xrec.item_facts` is on, so training and serving read the same text."""
    frame = ds.items[[c for c in (S.ITEM, S.TITLE, S.PROFILE, S.DESCRIPTION) if c in ds.items]].copy()
    if xrec.item_facts:
        from whyrec.data.item_facts import item_facts

        facts = item_facts(ds.items, ds.interactions, max_words=xrec.max_prompt_words)
        frame[FACTS] = [facts.get(i, "") for i in frame[S.ITEM].astype(str)]
    return frame


def save_explainer(out_dir: Path, module, enc, encoder_dir: str, ds, method, model, xrec, train, log,
                   items: pd.DataFrame | None = None) -> None:
    """`items`: `items_table(ds, xrec)` when the caller has it already."""
    from whyrec.llm.trainer import trainable_state

    with atomic_path(out_dir / "adapter_model.safetensors") as tmp:
        save_file(trainable_state(module), str(tmp))
    if Path(encoder_dir).resolve() != (out_dir / "encoder").resolve():
        shutil.copytree(encoder_dir, out_dir / "encoder", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("checkpoint*", MARKER))
    items = items_table(ds, xrec) if items is None else items
    for name, frame in (("items", items), ("users", _users_table(ds, enc))):
        with atomic_path(out_dir / f"{name}.parquet") as tmp:
            frame.to_parquet(tmp, index=False)
    write_json(out_dir / "training_log.json", log)
    write_json(out_dir / "config.json", {
        "method": method, "model": asdict(model), "xrec": asdict(xrec), "train": asdict(train), "encoder_dim": enc.dim,
        "dataset": ds.meta.get("name", ""), "whyrec_version": __version__, "steps": log["steps"], "complete": True,
    })
    (out_dir / "README.md").write_text(model_card(out_dir, enc, ds, model, xrec, train, log))


def _users_table(ds, enc) -> pd.DataFrame:
    """users.parquet: profiles for the prompt and each user's valid/test items (`HELD_OUT`), so the
    folder alone can keep a user's held-out items out of their recommendations. Every encoder user
    gets a row when the data has no user table (check.py wants all or none of them)."""
    cols = [c for c in (S.USER, S.PROFILE) if c in ds.users]
    users = ds.users[cols].copy() if len(ds.users) else pd.DataFrame({S.USER: list(enc.user2idx)})
    inter = ds.interactions
    held = inter[inter[S.SPLIT].astype(str) != S.TRAIN] if S.SPLIT in inter else inter.iloc[:0]
    lists = held.groupby(held[S.USER].astype(str))[S.ITEM].agg(lambda s: s.astype(str).tolist()).to_dict()
    users[HELD_OUT] = [lists.get(u, []) for u in users[S.USER].astype(str)]
    return users


def model_card(out_dir: Path, enc, ds, model: ModelConfig, xrec: XRecConfig, train, log: dict) -> str:
    """README.md of an explainer folder: which variant of XRec, on what backbone, trained how and on what."""
    from whyrec.methods.catalog import recorded_data

    name, lora = destination(out_dir).name, xrec.lora
    tuned = (f"LoRA r={lora.r} (alpha {lora.alpha}, dropout {lora.dropout}, on {', '.join(lora.target_modules)})"
             if lora.enabled else "no LoRA (frozen backbone, adapters only)")
    variant = f"XRec + LoRA r={lora.r}" if lora.enabled else "XRec (frozen backbone, adapters only)"
    budget = f"max_steps {train.max_steps}" if train.max_steps else f"{train.epochs:g} epoch(s)"
    label = ds.meta.get("name") or ds.meta.get("source")
    data = " ".join(x for x in (recorded_data(out_dir), f"({label})" if label else None) if x) or "unknown"
    return "\n".join([
        f"# whyrec explainer: {variant}", "",
        f"- method: XRec (Ma et al., EMNLP 2024); {tuned}",
        f"- backbone: `{model.name_or_path}` ({model.dtype})",
        f"- collaborative encoder: {enc.config.get('encoder', 'lightgcn')}, dim {enc.dim}, {enc.n_users:,} users, "
        f"{enc.n_items:,} items (copied into encoder/)",
        f"- adapter: {xrec.n_exps} experts, dropout {xrec.dropout}, noisy gate {xrec.noisy_gate}, "
        f"embeddings injected into q/k/v: {xrec.inject_qkv}",
        f"- data: {data}, {log['examples']:,} training explanations",
        f"- training: {log['steps']} steps ({budget}), batch {train.batch_size} x {train.grad_accum_steps} "
        f"accumulation, lr {train.lr:g}, seed {train.seed}, {log.get('elapsed_s', '?')} s, "
        f"{log.get('world_size', 1)} process(es); loss {log['first_loss']} -> {log['last_loss']}", "",
        f"Load with `whyrec.load_run('{name}')` or `whyrec explain --run {name} --user U --item I`.", "",
    ])


def load_explainer(path: str, device: str = "auto", lazy: bool = False, merge_lora: bool = True) -> Explainer:
    """The explainer in `path`; `lazy`: the LLM is built on first use (configs are still checked now).

    `merge_lora`: a folder trained with LoRA gets the LoRA weights folded into the backbone's
    projections (`XRec.merge_lora`), so decoding runs plain Linear layers; False keeps peft's
    wrappers (for debugging: the unmerged model is the one training saw). Training and resuming
    build the module with `build_module` and never merge."""
    from whyrec.encoders.artifact import load_encoder
    from whyrec.methods.common import saved_configs

    path = Path(path)
    if (path / "explainer").is_dir():  # a whole run folder
        path = path / "explainer"
    missing = [f for f in ARTIFACT_FILES if not (path / f).exists()]
    if missing or not (path / "encoder").is_dir():
        raise WhyrecError(f"{path} is not a complete explainer folder (missing {', '.join(missing) or 'encoder/'}); "
                          "train one with `whyrec train explainer`")
    cfg = read_json(path / "config.json")
    model, xrec = saved_configs(cfg, "xrec", XRecConfig, device)
    _usable(model.device)  # a bad --device fails now, also when the LLM is built later
    enc = load_encoder(path / "encoder")
    build = lambda: _load_module(path, cfg, model, xrec, merge_lora)  # noqa: E731
    items, users = pd.read_parquet(path / "items.parquet"), pd.read_parquet(path / "users.parquet")
    return Explainer(None if lazy else build(), enc, items, users, cfg, build=build)


def _load_module(path: Path, cfg: dict, model: ModelConfig, xrec: XRecConfig, merge_lora: bool = True):
    from whyrec.folders import weights_fit

    with weights_fit(path):  # also when built lazily, after the method's load returned
        module = build_module(cfg["method"], model, xrec, cfg["encoder_dim"])
        weights = load_file(str(path / "adapter_model.safetensors"))
        result = module.load_state_dict(weights, strict=False)
    if result.unexpected_keys:
        raise WhyrecError(f"{path}/adapter_model.safetensors does not match the config (e.g. {result.unexpected_keys[0]})")
    module.eval()
    if merge_lora:
        module.merge_lora()  # after the weights are in: the merge reads the trained LoRA
    return module


def _usable(device: str) -> None:
    from whyrec.llm.load import usable_device
    from whyrec.utils import resolve_device

    usable_device(resolve_device(device))
