"""Train an XRec explainer (the LLM side of the method) into one artifact folder (`.artifact`)."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from whyrec.config import ModelConfig, TrainConfig, XRecConfig
from whyrec.data import schema as S
from whyrec.methods.common import training_fingerprint
from whyrec.methods.xrec.artifact import Explainer, build_module, items_table, save_explainer
from whyrec.utils import WhyrecError, read_json, seed_everything, write_run_info


def train_explainer(data: str, encoder: str, out: str, method: str = "xrec",
                    model: ModelConfig | None = None, xrec: XRecConfig | None = None,
                    train: TrainConfig | None = None, resume: bool = True, overwrite: bool = False) -> dict:
    """Train the method's trainable parts on the dataset's train explanations; save to `out`.

    Under torchrun each process trains on its shard of every batch (`whyrec.distributed`);
    rank 0 writes the checkpoints and the folder. `out` is guarded by `whyrec.outputs`: a folder
    made with another config, data or encoder is refused (naming what differs) unless `overwrite`.
    An interrupted run may be continued with a larger train.max_steps/epochs (the batch order
    is a prefix-stable function of the seed, so that equals a fresh run with it).
    """
    from whyrec.distributed import device_for_rank, distributed_run
    from whyrec.outputs import output_folder
    from whyrec.utils import resolve_device

    model, xrec, train = model or ModelConfig(), xrec or XRecConfig(), train or TrainConfig()
    device = device_for_rank(resolve_device(model.device))
    with distributed_run(device):
        fingerprint = training_fingerprint(data, encoder, method, model, {"xrec": xrec}, train)
        with output_folder(out, f"{method} explainer", fingerprint, overwrite=overwrite) as work:
            return _train_explainer(data, encoder, work, method, model, xrec, train, resume, device)


def _train_explainer(data, encoder, out, method, model: ModelConfig, xrec, train, resume, device: str) -> dict:
    from dataclasses import replace

    from whyrec.data.dataset import RecDataset
    from whyrec.distributed import is_main, world_size
    from whyrec.encoders.artifact import load_encoder
    from whyrec.llm.trainer import train_loop
    from whyrec.outputs import BUDGET_FIELDS, check_finished

    out_dir = Path(out)
    if (out_dir / "config.json").exists() and read_json(out_dir / "config.json").get("complete"):
        done = {**asdict(TrainConfig()), **(read_json(out_dir / "config.json").get("train") or {})}
        check_finished(out_dir, f"{method} explainer", {"train": {k: done[k] for k in BUDGET_FIELDS}},
                       {"train": {k: getattr(train, k) for k in BUDGET_FIELDS}})
        return read_json(out_dir / "training_log.json")
    ds, enc = RecDataset.load(data), load_encoder(encoder)
    records = ds.explanation_records(S.TRAIN)
    if train.min_rating is not None and S.RATING in records:
        records = records[records[S.RATING] >= train.min_rating]
    if train.max_train_examples and len(records) > train.max_train_examples:
        records = records.sample(train.max_train_examples, random_state=train.seed)
    if len(records) == 0:
        raise WhyrecError(f"{data} has no training explanations (split 'train')")
    seed_everything(train.seed)
    module = build_module(method, replace(model, device=device), xrec, enc.dim)
    item_table = items_table(ds, xrec)  # with the facts slot's text when item_facts is on, as saved
    expl = Explainer(module, enc, item_table, ds.users, {})
    users, items = records[S.USER].astype(str).tolist(), records[S.ITEM].astype(str).tolist()
    user_vec, item_vec = expl.vectors(users, items)
    prompts, targets = expl.prompts(users, items), records[S.EXPLANATION].astype(str).tolist()
    tok = module.tokenizer
    lengths = [len(p) + len(t) for p, t in zip(prompts, targets)]  # characters: a cheap length proxy
    token_lengths = None
    if train.batch_tokens:  # prompt + target tokens (cut, plus EOS), as module.encode makes them
        p_len = [len(x) for x in tok(prompts, add_special_tokens=False).input_ids]
        t_ids = tok([t.strip() for t in targets], add_special_tokens=False).input_ids
        token_lengths = [a + min(len(b), train.max_target_tokens) + 1 for a, b in zip(p_len, t_ids)]

    def step(idx: list[int]) -> tuple[torch.Tensor, int]:
        batch = module.encode([prompts[k] for k in idx], [targets[k] for k in idx], train.max_target_tokens)
        loss = module(batch["input_ids"], batch["attention_mask"], batch["labels"], user_vec[idx], item_vec[idx])
        return loss, int((batch["labels"] != -100).sum())  # a mean over these target tokens

    if is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
        write_run_info(out_dir, {"data": data, "encoder": encoder, "method": method, "model": asdict(model),
                                 "xrec": asdict(xrec), "train": asdict(train), "world_size": world_size()},
                       "train explainer")
    state = train_loop(module, lengths, step, train, out_dir / "checkpoint", desc=f"train {method}", resume=resume,
                       token_lengths=token_lengths)
    log = {"steps": state["step"], "examples": len(records), "elapsed_s": round(state["elapsed_s"], 1),
           "first_loss": _mean(state["losses"][:10]), "last_loss": _mean(state["losses"][-10:]),
           "losses": state["losses"], "tokenizer_vocab": len(tok), "world_size": world_size(),
           "fsdp_sharded_layers": state.get("sharded_layers", 0)}
    if is_main():
        save_explainer(out_dir, module, enc, encoder, ds, method, model, xrec, train, log, item_table)
        shutil.rmtree(out_dir / "checkpoint", ignore_errors=True)
    return log


def _mean(xs):
    return round(sum(xs) / len(xs), 4) if xs else None
