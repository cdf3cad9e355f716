"""Train GaVaMoE stage 2 into one self-contained folder (METHODS §4.2-4.5; layout in `.artifact`)."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from whyrec.config import ModelConfig, TrainConfig
from whyrec.data import schema as S
from whyrec.methods.gavamoe.artifact import (
    GaVaMoEExplainer,
    _load_vae,
    build_gavamoe,
    item_facts_of,
    save_gavamoe,
)
from whyrec.methods.gavamoe.model import GaVaMoEConfig
from whyrec.utils import WhyrecError, read_json, seed_everything, write_run_info


def train_gavamoe(data: str, vae: str, out: str, model: ModelConfig | None = None, cfg: GaVaMoEConfig | None = None,
                  train: TrainConfig | None = None, resume: bool = True, overwrite: bool = False) -> dict:
    """Train stage 2 on the dataset's train explanations with a trained stage-1 VAE; save to `out`.

    Under torchrun each process trains on its shard of every batch; rank 0 writes the folder.
    `out` is guarded like `whyrec.methods.xrec.train.train_explainer`'s (fingerprint of config, data, VAE).
    """
    from whyrec.distributed import device_for_rank, distributed_run
    from whyrec.methods.common import training_fingerprint
    from whyrec.outputs import output_folder
    from whyrec.utils import resolve_device

    model, cfg, train = model or ModelConfig(), cfg or GaVaMoEConfig(), train or TrainConfig()
    device = device_for_rank(resolve_device(model.device))
    with distributed_run(device):
        fingerprint = training_fingerprint(data, vae, "gavamoe", model, {"gavamoe": cfg}, train)
        with output_folder(out, "gavamoe explainer", fingerprint, overwrite=overwrite) as work:
            return _train_gavamoe(data, vae, work, model, cfg, train, resume, device)


def _train_gavamoe(data, vae, out, model: ModelConfig, cfg, train, resume: bool, device: str) -> dict:
    from dataclasses import replace

    from whyrec.data.dataset import RecDataset
    from whyrec.distributed import is_main, world_size
    from whyrec.llm.trainer import train_loop
    from whyrec.outputs import BUDGET_FIELDS, check_finished

    out_dir = Path(out)
    wanted = {"method": "gavamoe", "model": asdict(model), "gavamoe": asdict(cfg), "train": asdict(train)}
    if (out_dir / "config.json").exists() and read_json(out_dir / "config.json").get("complete"):
        done = {**asdict(TrainConfig()), **(read_json(out_dir / "config.json").get("train") or {})}
        check_finished(out_dir, "gavamoe explainer", {"train": {k: done[k] for k in BUDGET_FIELDS}},
                       {"train": {k: getattr(train, k) for k in BUDGET_FIELDS}})
        return read_json(out_dir / "training_log.json")
    ds, art = RecDataset.load(data), _load_vae(vae, "cpu")
    records = ds.explanation_records(S.TRAIN)
    if train.min_rating is not None and S.RATING in records:
        records = records[records[S.RATING] >= train.min_rating]
    known = records[S.USER].astype(str).isin(art.user2idx) & records[S.ITEM].astype(str).isin(art.item2idx)
    records = records[known]
    if train.max_train_examples and len(records) > train.max_train_examples:
        records = records.sample(train.max_train_examples, random_state=train.seed)
    if len(records) == 0:
        raise WhyrecError(f"{data} has no training explanations whose user and item the VAE {vae} knows")
    seed_everything(train.seed)
    module = build_gavamoe(replace(model, device=device), cfg, art)
    expl = GaVaMoEExplainer(module, art, ds.item_text(), known_pairs(ds), {}, facts=item_facts_of(ds, cfg))
    users, items = records[S.USER].astype(str).tolist(), records[S.ITEM].astype(str).tolist()
    user_vec, item_vec, clusters = expl.inputs(users, items)
    col = lambda c: records[c].tolist() if c in records else None  # noqa: E731
    prompts, targets = expl.prompts(users, items, col(S.RATING), col(S.FEATURE)), records[S.EXPLANATION].astype(str).tolist()
    lengths = [len(p) + len(t) for p, t in zip(prompts, targets)]  # characters: a cheap length proxy
    token_lengths = _token_lengths(module.tokenizer, prompts, targets, train) if train.batch_tokens else None

    def step(idx: list[int]) -> tuple[torch.Tensor, int]:
        batch = module.encode([prompts[k] for k in idx], [targets[k] for k in idx], train.max_target_tokens)
        loss = module(batch["input_ids"], batch["attention_mask"], batch["labels"], user_vec[idx], item_vec[idx],
                      clusters[idx])
        return loss, int((batch["labels"] != -100).sum())  # a mean over these target tokens

    if is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
        write_run_info(out_dir, {"data": data, "vae": vae, **wanted, "world_size": world_size()}, "train gavamoe")
    state = train_loop(module, lengths, step, train, out_dir / "checkpoint", desc="train gavamoe", resume=resume,
                       token_lengths=token_lengths)
    losses = state["losses"]
    log = {"steps": state["step"], "examples": len(records), "elapsed_s": round(state["elapsed_s"], 1),
           "first_loss": _mean(losses[:10]), "last_loss": _mean(losses[-10:]), "losses": losses,
           "clusters": torch.bincount(clusters, minlength=art.n_clusters).tolist(), "world_size": world_size(),
           "fsdp_sharded_layers": state.get("sharded_layers", 0)}
    if is_main():
        save_gavamoe(out_dir, expl, vae, model, cfg, train, log, ds.meta.get("name", ""))
        shutil.rmtree(out_dir / "checkpoint", ignore_errors=True)
    return log


def _token_lengths(tok, prompts: list[str], targets: list[str], train: TrainConfig) -> list[int]:
    """Prompt + target tokens per example (target cut to max_target_tokens, plus EOS), as `GaVaMoE.encode`
    makes them. A row longer than `train.batch_tokens` is refused: the budget is what a step may cost,
    and the trainer would otherwise run that row alone over it."""
    p_len = [len(x) for x in tok(prompts, add_special_tokens=False).input_ids]
    t_len = [len(x) for x in tok([t.strip() for t in targets], add_special_tokens=False).input_ids]
    lengths = [a + min(b, train.max_target_tokens) + 1 for a, b in zip(p_len, t_len)]
    longest = max(lengths)
    if longest > train.batch_tokens:
        raise WhyrecError(f"--train.batch_tokens {train.batch_tokens} is below the longest training example "
                          f"({longest} tokens, prompt + target); raise it to at least {longest} or lower "
                          "--train.max_target_tokens")
    return lengths


def known_pairs(ds) -> pd.DataFrame:
    """(user, item, split[, rating, feature]) of every interaction and text record, last one winning."""
    frames = [f for f in (ds.interactions, ds.texts) if f is not None]
    cols = lambda f: [c for c in (S.USER, S.ITEM, S.RATING, S.FEATURE) if c in f]  # noqa: E731
    pairs = pd.concat([f[cols(f)] for f in frames], ignore_index=True)
    pairs[S.USER], pairs[S.ITEM] = pairs[S.USER].astype(str), pairs[S.ITEM].astype(str)
    pairs = pairs.drop_duplicates([S.USER, S.ITEM], keep="last")
    # Each pair's split (the interaction's, else the text's, else train), kept in pairs.parquet so that
    # serving leaves a user's valid/test items out of their recommendations.
    split = {}
    for f in frames[::-1]:
        if S.SPLIT in f:
            split.update(zip(zip(f[S.USER].astype(str), f[S.ITEM].astype(str)), f[S.SPLIT]))
    return pairs.assign(**{S.SPLIT: [s if isinstance(s, str) else S.TRAIN for s in
                                     map(split.get, zip(pairs[S.USER], pairs[S.ITEM]))]})


def _mean(xs):
    return round(sum(xs) / len(xs), 4) if xs else None
