"""Peak RSS of training and serving each explanation method in its CPU configuration.

    python benchmarks/method_memory.py [--methods xrec gavamoe pepler recalpaca recexplainer] [--users 60] [--steps 3]

Every measurement is a fresh child process (`os.wait4` returns its `ru_maxrss`), on a tiny
slice of real data: `--users` MovieLens-100K users prepared by `whyrec data prepare` (grounded
explanations), a LightGCN encoder (3 epochs), for GaVaMoE a VAE-GMM (2+2 epochs) and for
RecExplainer a SASRec target (2 epochs); these preparation runs are shared and measured too. "train" = build the method on the packaged
SmolLM2-135M-Instruct and run `--steps` optimizer steps with the method's CPU config
(`configs/cpu/{xrec,gavamoe}.yaml`; PEPLER: its defaults, 1 epoch, batch 16; RecAlpaca: LoRA
r16 on 32 of the ML-100K Alpaca records, batch 8 in micro-batches of 4; RecExplainer: its
defaults in hybrid mode - LoRA r16, connectors with 2,048 hidden units, max_length 1,024 - on 64
of the slice's alignment examples, micro-batch 2 x 2 accumulated), then save the artifact. "serve" = load the saved artifact and explain 4 (user, item) pairs. RSS includes
the ~0.5 GiB fp32 backbone and the Python/torch runtime (~0.4 GiB), so differences between
methods are what their own parts add.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GIB = 2**30
METHODS = ("xrec", "gavamoe", "pepler", "recalpaca", "recexplainer")


def _configs(method: str, steps: int):
    from whyrec.config import GaVaMoEConfig, LoraConfig, PEPLERConfig, TrainConfig, XRecConfig

    if method == "xrec":  # configs/cpu/xrec.yaml
        return {"xrec": XRecConfig(item_noun="movie", max_prompt_words=40, lora=LoraConfig(enabled=False)),
                "train": TrainConfig(lr=1e-3, batch_size=4, max_steps=steps, max_target_tokens=80,
                                     checkpoint_every=10_000)}
    if method == "gavamoe":  # configs/cpu/gavamoe.yaml
        return {"gavamoe": GaVaMoEConfig(n_experts=4, top_k=2, upcycle=True, moe_layers=[24, 25, 26, 27, 28, 29],
                                         use_feature=False, item_noun="movie"),
                "train": TrainConfig(lr=3e-4, batch_size=4, max_steps=steps, max_target_tokens=64,
                                     checkpoint_every=10_000)}
    return {"pepler": PEPLERConfig(variant="continuous", epochs=1, epochs_phase2=1, batch_size=16),
            "train": TrainConfig(max_steps=steps, checkpoint_every=10_000)}


def child(job: str, work: Path, users: int, steps: int) -> None:
    from whyrec.config import LightGCNConfig, ModelConfig, VaeGmmConfig

    data, enc, vae, target = work / "data", work / "encoder", work / "vae", work / "target"
    if job == "prepare":
        from whyrec.data.prepare import prepare_dataset
        from whyrec.encoders.train import train_encoder

        prepare_dataset(source="ml-100k", out=str(data), split="random", seed=42, max_users=users)
        train_encoder(str(data), str(enc), config=LightGCNConfig(epochs=3))
        return
    if job == "cluster":
        from whyrec.encoders.vae_train import train_vae_gmm

        train_vae_gmm(str(data), str(vae), VaeGmmConfig(pretrain_epochs=2, elbo_epochs=2), device="cpu",
                      progress=False)
        return
    if job == "target":
        from whyrec.config import SASRecConfig
        from whyrec.encoders.target_train import train_target

        train_target(str(data), str(target), "sasrec", SASRecConfig(epochs=2), device="cpu", progress=False)
        return
    kind, method = job.split(":")
    out = work / method
    if method == "recalpaca":
        return _recalpaca(kind, work, out, steps)
    if method == "recexplainer":
        return _recexplainer(kind, data, target, out, steps)
    model = ModelConfig(device="cpu")
    cfg = _configs(method, steps)
    if kind == "train":
        if method == "xrec":
            from whyrec.methods.xrec.train import train_explainer

            train_explainer(str(data), str(enc), str(out), model=model, xrec=cfg["xrec"], train=cfg["train"])
        elif method == "gavamoe":
            from whyrec.methods.gavamoe.train import train_gavamoe

            train_gavamoe(str(data), str(vae), str(out), model=model, cfg=cfg["gavamoe"], train=cfg["train"])
        else:
            from whyrec.methods.pepler.train import train_pepler

            train_pepler(str(data), str(out), model=model, pepler=cfg["pepler"], train=cfg["train"])
        return
    from whyrec.benchmark import folder_generator, select_pairs
    from whyrec.config import GenerationConfig
    from whyrec.data.dataset import RecDataset

    pairs = select_pairs(RecDataset.load(data), "test", 4, seed=0)
    _, load = folder_generator(out, GenerationConfig(max_new_tokens=48, batch_size=4), "cpu")
    load()(pairs)


def _recalpaca(kind: str, work: Path, out: Path, steps: int) -> None:
    """RecAlpaca: LoRA on 32 of the ML-100K Alpaca records (../shared/data/ml100k-instructions)."""
    from whyrec.config import ModelConfig
    from whyrec.methods.recalpaca.config import RecAlpacaConfig
    from whyrec.methods.recalpaca.train import load_alpaca_records

    records = load_alpaca_records(str(REPO.parent / "shared" / "data" / "ml100k-instructions" /
                                      "ml_100k_instruct_data.json"))[:32]
    if kind == "train":
        from whyrec.methods.recalpaca.train import train_recalpaca

        cfg = RecAlpacaConfig(batch_size=8, micro_batch_size=4, max_steps=steps, cutoff_len=512, save_steps=10_000)
        (work / "recalpaca-32.json").write_text(json.dumps(records))
        train_recalpaca(str(work / "recalpaca-32.json"), str(out), model=ModelConfig(device="cpu"), cfg=cfg)
        return
    from dataclasses import replace

    from whyrec.methods.recalpaca.model import GENERATION, load_recalpaca

    model = load_recalpaca(str(out), device="cpu")
    model.generate([(r["instruction"], r["input"]) for r in records[:4]], replace(GENERATION, max_new_tokens=48))


def _recexplainer(kind: str, data: Path, target: Path, out: Path, steps: int) -> None:
    """RecExplainer, hybrid mode, on the SASRec target of the slice: align, then explain 4 test pairs."""
    if kind == "train":
        from whyrec.config import ModelConfig, RecExplainerConfig
        from whyrec.methods.recexplainer.train import train_recexplainer

        cfg = RecExplainerConfig(mode="hybrid", micro_batch_size=2, grad_accum=2, max_steps=steps, max_examples=64,
                                 save_steps=10_000)
        train_recexplainer(str(target), str(out), model=ModelConfig(device="cpu"), cfg=cfg, resume=False)
        return
    from dataclasses import replace

    from whyrec.benchmark import select_pairs
    from whyrec.data import schema as S
    from whyrec.data.dataset import RecDataset
    from whyrec.methods.recexplainer.model import EXPLAIN_GENERATION, load_recexplainer

    pairs = select_pairs(RecDataset.load(data), "test", 4, seed=0)
    module = load_recexplainer(out, device="cpu")
    module.explain(pairs[S.USER].astype(str).tolist(), pairs[S.ITEM].astype(str).tolist(),
                   replace(EXPLAIN_GENERATION, max_new_tokens=48, min_new_tokens=0, batch_size=4))


def measure(job: str, args) -> dict:
    cmd = [sys.executable, __file__, "--_child", job, "--work", str(args.work), "--users", str(args.users),
           "--steps", str(args.steps)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    tic = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    row = {"job": job, "seconds": time.perf_counter() - tic, "peak_rss": usage.ru_maxrss * 1024, "ok": proc.returncode == 0}
    if not row["ok"]:
        row["error"] = (err.strip().splitlines() or ["?"])[-1][:160]
    print(f"  {job}: {row['seconds']:.0f} s, peak RSS {row['peak_rss'] / GIB:.2f} GiB"
          + ("" if row["ok"] else f"  FAILED: {row['error']}"), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--users", type=int, default=60, help="MovieLens-100K users in the data slice")
    p.add_argument("--steps", type=int, default=3, help="optimizer steps per training run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=REPO / "runs" / "bench-method-memory")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        return child(args._child, args.work, args.users, args.steps)

    jobs = ["prepare"] + (["cluster"] if "gavamoe" in args.methods else []) + (
        ["target"] if "recexplainer" in args.methods else [])
    jobs += [f"{kind}:{m}" for m in args.methods for kind in ("train", "serve")]
    rows = [measure(job, args) for job in jobs]
    print(f"\nML-100K slice of {args.users} users, SmolLM2-135M-Instruct fp32 on CPU, {args.steps} training steps, "
          f"threads {args.threads}\n")
    print("| method | stage | peak RSS (GiB) | wall (s) |")
    print("|---|---|---|---|")
    for r in rows:
        name, _, stage = r["job"].partition(":")
        label = (stage, name) if stage else ("(shared)", {"prepare": "data + LightGCN", "cluster": "VAE-GMM",
                                                            "target": "SASRec target"}[name])
        state = f"{r['peak_rss'] / GIB:.2f}" if r["ok"] else f"failed ({r['error']})"
        print(f"| {label[0]} | {label[1]} | {state} | {r['seconds']:.0f} |")
    (args.work / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
