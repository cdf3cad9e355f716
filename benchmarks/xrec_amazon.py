"""XRec on XRec's own Amazon-books data, on a CPU, against XRec's published predictions.

    python benchmarks/xrec_amazon.py --minutes 20 [--shared ../shared/data] [--work runs/bench-xrec-amazon]

1. LightGCN (XRec's hyperparameters) on the full training graph rebuilt from para_dict.pickle.
2. tst.pkl (3,000 explanation records) split by a fixed seed into 2,400 train / 600 test.
3. XRec adapters on SmolLM2-135M-Instruct (frozen), and adapters + LoRA, each for --minutes.
4. Generate for the 600 test pairs; score with PEPLER's definitions next to XRec's own
   Llama-2-7B predictions for the same references (pred/ref pairs re-linked to tst rows by
   exact reference text) and zero-shot SmolLM2 (same prompt text without the placeholders).
Prints a markdown table and writes it with the raw numbers to WORK/results.{md,json}.
Every stage caches its output in WORK, so a re-run only redoes what is missing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

from whyrec.config import GenerationConfig, LightGCNConfig, ModelConfig, TrainConfig, XRecConfig
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.safe_pickle import safe_load_pickle
from whyrec.data.splits import resplit_texts
from whyrec.data.xrec import load_xrec
from whyrec.encoders.train import train_encoder
from whyrec.eval.text import pepler_text_metrics
from whyrec.methods.xrec.artifact import load_explainer
from whyrec.methods.xrec.model import EXPLAIN_TOKEN, ITEM_TOKEN, USER_TOKEN
from whyrec.methods.xrec.train import train_explainer

GEN = GenerationConfig(max_new_tokens=80, batch_size=16, repetition_penalty=1.1)


def prepare(shared: Path, work: Path, seed: int) -> RecDataset:
    if (work / "data" / "dataset.json").exists():
        return RecDataset.load(work / "data")
    ds = resplit_texts(load_xrec(shared / "xrec-amazon"), test_size=600, seed=seed)
    ds.save(work / "data")
    return ds


def xrec_published(shared: Path, test: pd.DataFrame) -> list[str]:
    """XRec's own predictions for our test rows, re-linked by exact reference text."""
    preds = safe_load_pickle(shared / "xrec-amazon" / "tst_pred.pkl")
    refs = safe_load_pickle(shared / "xrec-amazon" / "tst_ref.pkl")
    by_ref = dict(zip(map(str, refs), map(str, preds)))
    missing = [r for r in test[S.EXPLANATION] if r not in by_ref]
    assert not missing, f"{len(missing)} references not found in tst_ref.pkl"
    return [by_ref[r] for r in test[S.EXPLANATION]]


def generate(explainer_dir: Path, test: pd.DataFrame, out: Path) -> tuple[list[str], float]:
    if out.exists():
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        return [r["prediction"] for r in rows], rows[0]["seconds_total"]
    expl = load_explainer(str(explainer_dir), device="cpu")
    t = time.time()
    preds = expl.explain(test[S.USER].tolist(), test[S.ITEM].tolist(), GEN)
    secs = time.time() - t
    out.write_text("".join(json.dumps({"prediction": p, "seconds_total": secs}) + "\n" for p in preds))
    return preds, secs


def zero_shot(explainer_dir: Path, test: pd.DataFrame, out: Path) -> tuple[list[str], float]:
    """The same prompt text with the collaborative placeholders removed, plain SmolLM2."""
    if out.exists():
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        return [r["prediction"] for r in rows], rows[0]["seconds_total"]
    expl = load_explainer(str(explainer_dir), device="cpu")
    tok, llm = expl.module.tokenizer, expl.module.llm
    prompts = [p.replace(f"user record: {USER_TOKEN} book record: {ITEM_TOKEN} ", "").replace(EXPLAIN_TOKEN, "")
               for p in expl.prompts(test[S.USER].tolist(), test[S.ITEM].tolist())]
    tok.padding_side = "left"
    preds, t = [], time.time()
    for s in range(0, len(prompts), GEN.batch_size):
        enc = tok(prompts[s:s + GEN.batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            outs = llm.generate(**enc, max_new_tokens=GEN.max_new_tokens, do_sample=False,
                                repetition_penalty=GEN.repetition_penalty, pad_token_id=tok.pad_token_id)
        preds += [x.strip() for x in tok.batch_decode(outs[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]
        print(f"zero-shot {len(preds)}/{len(prompts)}", flush=True)
    secs = time.time() - t
    out.write_text("".join(json.dumps({"prediction": p, "seconds_total": secs}) + "\n" for p in preds))
    return preds, secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--work", default="runs/bench-xrec-amazon")
    ap.add_argument("--minutes", type=float, default=20.0, help="training wall time per variant")
    ap.add_argument("--lightgcn-epochs", type=int, default=300)
    ap.add_argument("--lightgcn-batch", type=int, default=1024, help="XRec: 1024; 8192 with lr 5e-3 is ~8x faster per epoch on CPU")
    ap.add_argument("--lightgcn-lr", type=float, default=1e-3)
    ap.add_argument("--gen-tokens", type=int, default=80)
    ap.add_argument("--variants", default="adapters,lora")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    shared, work = Path(args.shared), Path(args.work)
    GEN.max_new_tokens = args.gen_tokens
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    ds = prepare(shared, work, args.seed)
    test = ds.explanation_records(S.TEST).reset_index(drop=True)
    t = time.time()
    enc = train_encoder(str(work / "data"), str(work / "encoder"),
                        config=LightGCNConfig(epochs=args.lightgcn_epochs, batch_size=args.lightgcn_batch,
                                              lr=args.lightgcn_lr, eval_every=5, patience=3), device="cpu")
    print("LightGCN", json.dumps({k: enc[k] for k in ("best_epoch", "test") if k in enc}), f"{time.time() - t:.0f}s")

    rows = {}
    refs = test[S.EXPLANATION].tolist()
    published = xrec_published(shared, test)
    rows["XRec (Llama-2-7B, published predictions)"] = (pepler_text_metrics(published, refs), None, None)
    first_dir = None
    for variant in args.variants.split(","):
        xcfg = XRecConfig(item_noun="book", max_prompt_words=60)
        xcfg.lora.enabled = variant == "lora"
        tcfg = TrainConfig(lr=1e-3 if variant == "adapters" else 3e-4, batch_size=4, max_steps=100000,
                           max_minutes=args.minutes, max_target_tokens=80, checkpoint_every=25)
        edir = work / f"explainer-{variant}"
        log = train_explainer(str(work / "data"), str(work / "encoder"), str(edir), model=ModelConfig(device="cpu"),
                              xrec=xcfg, train=tcfg)
        preds, secs = generate(edir, test, work / f"predictions-{variant}.jsonl")
        rows[f"whyrec XRec, SmolLM2-135M, {variant}"] = (pepler_text_metrics(preds, refs), log, secs)
        first_dir = first_dir or edir
    preds, secs = zero_shot(first_dir, test, work / "predictions-zero-shot.jsonl")
    rows["zero-shot SmolLM2-135M (no adapters)"] = (pepler_text_metrics(preds, refs), None, secs)

    lines = ["| system | BLEU-1 | BLEU-4 | ROUGE-L F | USR | train steps (loss first→last) | train min | generate min (600) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, (m, log, secs) in rows.items():
        train = f"{log['steps']} ({log['first_loss']}→{log['last_loss']})" if log else "–"
        tmin = f"{log['elapsed_s'] / 60:.1f}" if log else "–"
        gmin = f"{secs / 60:.1f}" if secs else "–"
        lines.append(f"| {name} | {m['bleu1']:.2f} | {m['bleu4']:.2f} | {m['rougeL_f']:.2f} | {m['usr']:.4f} | {train} | {tmin} | {gmin} |")
    table = "\n".join(lines)
    print(table)
    (work / "results.md").write_text(table + "\n")
    (work / "results.json").write_text(json.dumps({k: {"metrics": v[0], "gen_seconds": v[2]} for k, v in rows.items()}, indent=2))


if __name__ == "__main__":
    main()
