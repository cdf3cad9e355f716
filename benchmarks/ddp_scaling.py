"""Data-parallel XRec training on this CPU: 1 process vs 2 torchrun ranks (gloo), with and without FSDP.

    python benchmarks/ddp_scaling.py [--steps 8] [--batch_size 8] [--users 60] [--systems 1x2,2x1,2x1fsdp,1x1]

Every system runs the same `whyrec train explainer --config configs/cpu/xrec.yaml` command on the
packaged SmolLM2-135M-Instruct (fp32), the same global batch and seed, on a MovieLens-100K slice
prepared as in `method_memory.py` (shared with it). Systems name processes x threads per process:
`1x2` one process on both cores, `2x1` torchrun with 2 ranks of one thread each, `2x1fsdp` the
same with `--train.fsdp true` (frozen decoder layers sharded over the ranks), `1x1` one process,
one thread (the per-core baseline). Throughput is training examples per second of the training
loop (`training_log.json`'s `elapsed_s`, model loading excluded). Memory per process: the peak
(`os.wait4`'s `ru_maxrss`, the largest process of the tree, which includes loading the whole
backbone on every rank) and the largest RSS sampled over the ranks during the last half of the
training loop (what a rank holds while it trains), and of that the private part (RSS minus shared
pages: the backbone's safetensors are memory-mapped, so unsharded ranks share one page-cache copy of
the weights, while FSDP's shards are private copies). Runs are sequential; repeat `--rounds` to see
the spread on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GIB = 2**30
SYSTEMS = {"1x2": (1, 2, False), "2x1": (2, 1, False), "2x1fsdp": (2, 1, True), "1x1": (1, 1, False)}


def _whyrec() -> str:
    return str(Path(sys.executable).with_name("whyrec"))


def _sample_rss(root_pid: int, samples: list, stop: threading.Event) -> None:
    """Every 0.2 s: (time, largest RSS, largest private RSS among the run's processes)."""
    import psutil

    while not stop.is_set():
        try:
            procs = [psutil.Process(root_pid), *psutil.Process(root_pid).children(recursive=True)]
            infos = [p.memory_info() for p in procs]
            samples.append((time.perf_counter(), max(m.rss for m in infos), max(m.rss - m.shared for m in infos)))
        except psutil.Error:
            pass
        stop.wait(0.2)


def run(system: str, work: Path, steps: int, batch: int) -> dict:
    nproc, threads, fsdp = SYSTEMS[system]
    out = work / "runs" / system
    shutil.rmtree(out, ignore_errors=True)
    args = ["train", "explainer", "--config", str(REPO / "configs/cpu/xrec.yaml"), "--data", str(work / "data"),
            "--encoder", str(work / "encoder"), "--out", str(out), "--train.max_steps", str(steps),
            "--train.batch_size", str(batch), "--train.max_minutes", "600", "--train.checkpoint_every", "100000",
            "--model.device", "cpu", *(["--train.fsdp", "true"] if fsdp else [])]
    launch = [_whyrec()] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                                             str(nproc), "--master_addr", "127.0.0.1", "--master_port", "29533",
                                             _whyrec()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    tic = time.perf_counter()
    proc = subprocess.Popen([*launch, *args], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    samples: list = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(proc.pid, samples, stop), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - tic
    stop.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{system} failed: {(proc.stderr.read().strip().splitlines() or ['?'])[-1]}")
    log = json.loads((out / "training_log.json").read_text())
    train_s = log["elapsed_s"]
    # the training loop is the last train_s seconds before the weights are written; take its second half
    end = tic + wall
    window = [x for x in samples if end - train_s / 2 - 5 <= x[0] <= end - 5] or samples
    return {"system": system, "steps": log["steps"], "train_s": train_s, "wall_s": wall,
            "examples_per_s": log["steps"] * batch / train_s, "peak_rss": usage.ru_maxrss * 1024,
            "train_rss": max(x[1] for x in window), "train_private": max(x[2] for x in window), "sharded_layers": log.get("fsdp_sharded_layers", 0), "last_loss": log["losses"][-1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch_size", type=int, default=8, help="global batch")
    p.add_argument("--users", type=int, default=60)
    p.add_argument("--systems", default="1x2,2x1,2x1fsdp,1x1")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--work", type=Path, default=REPO / "runs" / "bench-method-memory")
    args = p.parse_args()
    if not (args.work / "encoder" / "config.json").exists():
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "method_memory.py"), "--_child", "prepare",
                        "--work", str(args.work), "--users", str(args.users)], check=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    systems = [s.strip() for s in args.systems.split(",")]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    rows = []
    for r in range(args.rounds):
        for system in (systems if r % 2 == 0 else systems[::-1]):
            rows.append(run(system, args.work, args.steps, args.batch_size))
            x = rows[-1]
            print(f"  {system}: {x['examples_per_s']:.2f} ex/s, train {x['train_s']:.0f} s, peak "
                  f"{x['peak_rss'] / GIB:.2f} GiB, training {x['train_rss'] / GIB:.2f} GiB "
                  f"({x['train_private'] / GIB:.2f} private)", flush=True)
    base = next((x["examples_per_s"] for x in rows if x["system"] == systems[0]), None)
    print(f"\nXRec (configs/cpu/xrec.yaml), SmolLM2-135M-Instruct fp32, global batch {args.batch_size}, "
          f"{args.steps} steps, {args.users}-user ML-100K slice\n")
    print(f"| system | examples/s | vs {systems[0]} | train loop (s) | peak RSS / process (GiB) | "
          "RSS while training / process (GiB) | of it private (GiB) | sharded layers | last loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    for x in rows:
        print(f"| {x['system']} | {x['examples_per_s']:.2f} | {x['examples_per_s'] / base:.2f}× | {x['train_s']:.0f} | "
              f"{x['peak_rss'] / GIB:.2f} | {x['train_rss'] / GIB:.2f} | {x['train_private'] / GIB:.2f} | {x['sharded_layers']} | {x['last_loss']:.4f} |")


if __name__ == "__main__":
    main()
