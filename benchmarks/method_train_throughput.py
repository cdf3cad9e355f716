"""Training-step throughput of GaVaMoE, RecAlpaca and RecExplainer (and XRec) against this CPU's peak.

    python benchmarks/method_train_throughput.py [--methods xrec,gavamoe,recalpaca,recexplainer]
        [--warmup 2] [--steps 4] [--threads 1] [--users 60] [--work /tmp/h3_work] [--out /tmp/h3_results.md]

Each method runs its own, unchanged training function in this process with its CPU defaults
(`configs/cpu/{xrec,gavamoe}.yaml`; RecAlpaca's and RecExplainer's config defaults), on the
packaged SmolLM2-135M-Instruct with `model.dtype auto` (bf16 frozen weights on a CPU with AMX),
for `--warmup` + `--steps` optimizer steps on a MovieLens-100K slice (`--users` users, prepared
as `whyrec data prepare --source ml-100k` does; LightGCN for XRec, VAE-GMM for GaVaMoE, SASRec
for RecExplainer; RecAlpaca on the ML-100K Alpaca records of ../shared/data/ml100k-instructions):

- XRec, GaVaMoE: `train_explainer` / `train_gavamoe`, whose loop is `whyrec.llm.trainer.train_loop`.
  `--compile full-run` (default) sets `train.compile` to what `compile: auto` picks for a CPU
  config's full-length run (>= 100 steps: on where a C++ compiler exists); a short run alone
  would stay eager. `max_minutes` is dropped so the step count is fixed.
- RecAlpaca, RecExplainer: `train_recalpaca` / `train_recexplainer`, the HF Trainer with LoRA
  (micro-batches accumulated to one optimizer step: RecAlpaca 4 x 8, RecExplainer 4 x 4).

Nothing in the library changes. The timing is instrumentation patched in for the run only
(`unittest.mock.patch`): for the own loop, `whyrec.distributed.data_parallel_step` (one optimizer
step: forwards, backwards, clipping, Adam) is timed; for the Trainer, a `TrainerCallback` times
`on_step_begin` .. `on_step_end` (the micro-batches are collated before it, so collation is not
timed). A forward pre-hook on the trained module (for the Trainer, its `compute_loss`) records each
micro-batch's attention mask and labels for the FLOP count. Between timed steps, outside the
timed span, the best fp32 and bf16 `torch.mm` 2048² (`xrec_train_throughput.peak_matmul_flops`)
is measured; each step is compared with the better of its two adjacent peaks. After the steps, the bf16 "model-shape rate"
(`xrec_train_throughput.shape_peak_flops`: the backbone's own linears at the median padded tokens
per forward, alone) is the ceiling for a step of this 576-wide model.

Model FLOPs per step (useful work: padding excluded), summed over the rows of the step, a row
having L real tokens of which t carry the loss; N_dense = h·q + 2·h·kv + q·h + 3·h·inter the
matmul weights of one decoder layer (q, kv: query and key/value widths; 3·h·inter the SwiGLU MLP):

    frozen weights        4·N·L        (2 forward + 2 backward to the input)
    trainable weights     6·N·L        (also 2 for the weight gradient): LoRA A and B
                                       (r·(in + out) per adapted linear and layer), GaVaMoE's
                                       experts (top_k of them per token: top_k·3·h·inter) and
                                       routers (h·n_experts) in its MoE layers, which replace the
                                       dense MLP there
    attention             12·layers·q·L²   (scores and values, forward and backward; no causal discount)
    LM head (frozen)      4·h·V·t      (only the positions the loss uses)

Per-row input maps (XRec's adapters, GaVaMoE's VAE projections, RecExplainer's connectors) run
once per placeholder, not per token, and are left out (< 0.1% of a step).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch

BENCH = Path(__file__).resolve().parent
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
METHODS = ("xrec", "gavamoe", "recalpaca", "recexplainer")


@dataclass
class Arch:
    """The decoder's matmul shapes (llama-style: SwiGLU MLP, grouped-query attention)."""

    hidden: int
    inter: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def of(cls, conf) -> Arch:
        head = getattr(conf, "head_dim", None) or conf.hidden_size // conf.num_attention_heads
        return cls(conf.hidden_size, conf.intermediate_size, conf.num_hidden_layers, conf.num_attention_heads,
                   conf.num_key_value_heads, head, conf.vocab_size)

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear of one decoder layer, by its HF llama name."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.inter
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


@dataclass
class Trainables:
    """What a method trains inside the decoder (None/empty: frozen)."""

    lora_r: int = 0
    lora_targets: tuple[str, ...] = ()
    moe_layers: tuple[int, ...] = ()
    top_k: int = 0
    n_experts: int = 0


def per_token_weight_flops(arch: Arch, tr: Trainables) -> int:
    """Matmul FLOPs per real token over all layers: 4 per frozen weight, 6 per trainable one."""
    lin = arch.linears()
    attn = sum(a * b for n, (a, b) in lin.items() if n.endswith(("q_proj", "k_proj", "v_proj", "o_proj")))
    mlp = sum(a * b for n, (a, b) in lin.items() if n.endswith(("gate_proj", "up_proj", "down_proj")))
    lora = sum(tr.lora_r * (a + b) for n, (a, b) in lin.items() if n in tr.lora_targets)
    moe = len(tr.moe_layers)
    dense = (arch.layers - moe) * mlp
    experts = moe * (tr.top_k * mlp + arch.hidden * tr.n_experts)
    return 4 * (arch.layers * attn + dense) + 6 * (arch.layers * lora + experts)


def step_flops(arch: Arch, tr: Trainables, rows: list[tuple[int, int]]) -> int:
    """Useful model FLOPs of one optimizer step over `rows` = [(real tokens L, loss tokens t)]."""
    per_token = per_token_weight_flops(arch, tr)
    q = arch.heads * arch.head_dim
    return sum(per_token * L + 12 * arch.layers * q * L * L + 4 * arch.hidden * arch.vocab * t for L, t in rows)


def prepare(work: Path, users: int, methods: list[str]) -> None:
    """The ML-100K slice and the encoders the methods need (each built once, kept in `work`)."""
    from whyrec.config import LightGCNConfig, SASRecConfig, VaeGmmConfig

    data = work / "data"
    if not (data / "dataset.json").exists():
        from whyrec.data.prepare import prepare_dataset

        prepare_dataset(source="ml-100k", out=str(data), split="random", seed=42, max_users=users, overwrite=True)
    if "xrec" in methods and not (work / "encoder" / "config.json").exists():
        from whyrec.encoders.train import train_encoder

        train_encoder(str(data), str(work / "encoder"), config=LightGCNConfig(epochs=3))
    if "gavamoe" in methods and not (work / "vae" / "config.json").exists():
        from whyrec.encoders.vae_train import train_vae_gmm

        train_vae_gmm(str(data), str(work / "vae"), VaeGmmConfig(pretrain_epochs=2, elbo_epochs=2), device="cpu",
                      progress=False)
    if "recexplainer" in methods and not (work / "target" / "config.json").exists():
        from whyrec.encoders.target_train import train_target

        train_target(str(data), str(work / "target"), "sasrec", SASRecConfig(epochs=2), device="cpu", progress=False)


class Recorder:
    """Collects, per optimizer step, its seconds, its micro-batches' (L, t) rows and adjacent peaks."""

    def __init__(self, warmup: int):
        self.warmup, self.steps, self.current = warmup, [], None
        self.module = None
        self.peaks, self.peaks16 = [], []

    def watch(self, module: torch.nn.Module, hook: bool = True) -> None:
        """Record (mask, labels) of each forward of `module`; hook=False: `compute_loss` calls `record`."""
        self.module = module

        def pre_hook(_, args, kwargs):
            names = ("input_ids", "attention_mask", "labels")
            got = dict(zip(names, args)) | {k: kwargs[k] for k in names if k in kwargs}
            self.record(got["attention_mask"], got["labels"]) if module.training else None

        if hook:
            module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def record(self, mask: torch.Tensor, labels: torch.Tensor) -> None:
        if self.current is not None:
            self.current["padded"].append(mask.numel())
            self.current["rows"] += list(zip(mask.sum(1).tolist(), (labels != -100).sum(1).tolist()))

    def begin(self) -> None:
        if len(self.steps) == self.warmup and not self.peaks:  # the peak just before the first timed step
            self._peak()
        self.current = {"rows": [], "padded": [], "tic": time.perf_counter()}

    def end(self) -> None:
        cur, self.current = self.current, None
        cur["seconds"] = time.perf_counter() - cur.pop("tic")
        self.steps.append(cur)
        if len(self.steps) > self.warmup:  # outside the timed span
            self._peak()
            cur["peak"], cur["peak16"] = max(self.peaks[-2:]), max(self.peaks16[-2:])
        kind = "warm-up" if len(self.steps) <= self.warmup else "step"
        print(f"  {kind} {len(self.steps)}: {cur['seconds']:.2f} s, {len(cur['rows'])} rows, "
              f"{sum(L for L, _ in cur['rows'])} real tokens", flush=True)

    def _peak(self) -> None:
        peak = xrec_bench().peak_matmul_flops
        self.peaks.append(peak())
        self.peaks16.append(peak(dtype=torch.bfloat16))


def timed_own_loop(rec: Recorder):
    """Patches for `train_loop` methods: watch the module it trains, time `data_parallel_step`."""
    import whyrec.distributed as D
    import whyrec.llm.trainer as T

    real_loop, real_step = T.train_loop, D.data_parallel_step

    def train_loop(module, *args, **kwargs):
        rec.watch(module)
        return real_loop(module, *args, **kwargs)

    def data_parallel_step(*args, **kwargs):
        rec.begin()
        try:
            return real_step(*args, **kwargs)
        finally:
            rec.end()

    stack = ExitStack()
    stack.enter_context(mock.patch.object(T, "train_loop", train_loop))
    stack.enter_context(mock.patch.object(D, "data_parallel_step", data_parallel_step))
    return stack


def timing_callback(rec: Recorder):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            rec.watch(model, hook=False)  # RecAlpaca's loss (target_loss) bypasses the PEFT model's forward

        def on_step_begin(self, args, state, control, **kw):
            rec.begin()

        def on_step_end(self, args, state, control, **kw):
            rec.end()

    return StepTimer()


def with_callback(factory, rec: Recorder):
    """`factory(trainer_cls)` or `factory()` -> a Trainer class whose instances also carry the timer."""

    def patched(*args):
        cls = factory(*args)

        class Timed(cls):
            def __init__(self, *a, callbacks=None, **kw):
                super().__init__(*a, callbacks=list(callbacks or []) + [timing_callback(rec)], **kw)

            def compute_loss(self, model, inputs, *a, **kw):
                if model.training:
                    rec.record(inputs["attention_mask"], inputs["labels"])
                return super().compute_loss(model, inputs, *a, **kw)

        return Timed

    return patched


def run_method(method: str, work: Path, steps_total: int, rec: Recorder, compile_: bool | None):
    """Train `method` for `steps_total` optimizer steps; returns (backbone config, Trainables)."""
    from whyrec.config import GaVaMoEConfig, LoraConfig, ModelConfig, TrainConfig, XRecConfig

    model, out = ModelConfig(device="cpu"), work / f"out-{method}"
    if method == "xrec":  # configs/cpu/xrec.yaml
        from whyrec.methods.xrec.train import train_explainer

        cfg = XRecConfig(n_exps=8, dropout=0.2, noisy_gate=True, inject_qkv=True, item_noun="movie",
                         max_prompt_words=40, lora=LoraConfig(enabled=False))
        train = TrainConfig(lr=1e-3, batch_size=4, max_steps=steps_total, max_target_tokens=80,
                            checkpoint_every=10_000, compile=compile_)
        with timed_own_loop(rec):
            train_explainer(str(work / "data"), str(work / "encoder"), str(out), model=model, xrec=cfg, train=train,
                            resume=False, overwrite=True)
        return rec.module.llm.config, Trainables()
    if method == "gavamoe":  # configs/cpu/gavamoe.yaml
        from whyrec.methods.gavamoe.train import train_gavamoe

        cfg = GaVaMoEConfig(n_experts=4, top_k=2, upcycle=True, moe_layers=[24, 25, 26, 27, 28, 29],
                            use_feature=False, item_noun="movie")
        train = TrainConfig(lr=3e-4, batch_size=4, max_steps=steps_total, max_target_tokens=64,
                            checkpoint_every=10_000, compile=compile_)
        with timed_own_loop(rec):
            train_gavamoe(str(work / "data"), str(work / "vae"), str(out), model=model, cfg=cfg, train=train,
                          resume=False, overwrite=True)
        lc = cfg.lora
        return rec.module.llm.config, Trainables(lc.r if lc.enabled else 0, tuple(lc.target_modules),
                                                 tuple(cfg.moe_layers), cfg.top_k, cfg.n_experts)
    if method == "recalpaca":
        import whyrec.methods.recalpaca.train as R
        from whyrec.methods.recalpaca.config import RecAlpacaConfig

        cfg = RecAlpacaConfig(max_steps=steps_total, save_steps=10_000)
        records = R.load_alpaca_records(str(SHARED / "ml100k-instructions" / "ml_100k_instruct_data.json"))
        path = work / "recalpaca-records.json"
        path.write_text(json.dumps(records[:cfg.batch_size * steps_total]))
        with mock.patch.object(R, "stops_at_planned_end", with_callback(R.stops_at_planned_end, rec)):
            R.train_recalpaca(str(path), str(out), model=model, cfg=cfg, resume=False, overwrite=True)
    else:
        import whyrec.methods.recexplainer.train as X
        from whyrec.config import RecExplainerConfig

        cfg = RecExplainerConfig(max_steps=steps_total, save_steps=10_000,
                                 max_examples=RecExplainerConfig().micro_batch_size * 4 * steps_total)
        with mock.patch.object(X, "_trainer_class", with_callback(X._trainer_class, rec)):
            X.train_recexplainer(str(work / "target"), str(out), model=model, cfg=cfg, resume=False, overwrite=True)
    lc = cfg.lora
    return rec.module.config if method == "recalpaca" else rec.module.llm.config, Trainables(
        lc.r, tuple(lc.target_modules))


def summarise(method: str, rec: Recorder, conf, tr: Trainables) -> dict:
    arch, timed = Arch.of(conf), rec.steps[rec.warmup:]
    for s in timed:
        s["flops"] = step_flops(arch, tr, s["rows"])
    tokens = int(statistics.median(p for s in timed for p in s["padded"]))
    shape16 = max(xrec_bench().shape_peak_flops(conf, tokens, torch.bfloat16) for _ in range(2))
    secs = sum(s["seconds"] for s in timed)
    real = sum(L for s in timed for L, _ in s["rows"])
    return {
        "method": method, "steps": len(timed), "step_s": statistics.median(s["seconds"] for s in timed),
        "rows_per_step": statistics.median(len(s["rows"]) for s in timed),
        "real_tok_s": real / secs, "padding": sum(p for s in timed for p in s["padded"]) / real,
        "gflop_step": statistics.median(s["flops"] for s in timed) / 1e9,
        "gflop_s": sum(s["flops"] for s in timed) / secs / 1e9,
        "pct_fp32": 100 * statistics.median(s["flops"] / s["seconds"] / s["peak"] for s in timed),
        "pct_bf16": 100 * statistics.median(s["flops"] / s["seconds"] / s["peak16"] for s in timed),
        "pct_shape": 100 * sum(s["flops"] for s in timed) / secs / shape16,
        "peak32": statistics.median(rec.peaks) / 1e9, "peak16": statistics.median(rec.peaks16) / 1e9,
        "shape16": shape16 / 1e9, "shape_tokens": tokens,
        "warmup_s": [round(s["seconds"], 1) for s in rec.steps[:rec.warmup]],
    }


def table(rows: list[dict]) -> str:
    head = ("| method | step s (median) | rows/step | real tok/s | padding | model GFLOP/step | model GFLOP/s | "
            "% fp32 peak | % bf16 peak | % bf16 model-shape rate | peaks fp32 / bf16 / shape (GFLOP/s) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['method']} | {r['step_s']:.2f} | {r['rows_per_step']:g} | {r['real_tok_s']:.0f} | {r['padding']:.2f} | "
        f"{r['gflop_step']:.0f} | {r['gflop_s']:.1f} | {r['pct_fp32']:.1f}% | {r['pct_bf16']:.1f}% | "
        f"{r['pct_shape']:.1f}% | {r['peak32']:.0f} / {r['peak16']:.0f} / {r['shape16']:.0f} "
        f"(at {r['shape_tokens']} tokens) |\n" for r in rows)


def xrec_bench():
    """benchmarks/xrec_train_throughput.py (its peak and model-shape timers), imported only when
    measuring: the FLOP formulas above stay importable without it."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import xrec_train_throughput

    return xrec_train_throughput


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()  # beside every speed number: the machine is shared


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS), help="comma list of " + ", ".join(METHODS))
    p.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first (compilation, caches)")
    p.add_argument("--steps", type=int, default=4, help="timed optimizer steps per method")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--users", type=int, default=60, help="MovieLens-100K users in the data slice")
    p.add_argument("--compile", choices=("full-run", "off"), default="full-run",
                   help="train.compile of the own-loop methods (see the docstring)")
    p.add_argument("--work", type=Path, default=Path("/tmp/h3_work"))
    p.add_argument("--out", type=Path, default=Path("/tmp/h3_results.md"))
    args = p.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if any(m not in METHODS for m in methods):
        p.error(f"unknown method in {args.methods!r}; choose from {', '.join(METHODS)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    from whyrec.llm.compile_policy import compiler_available

    compile_ = compiler_available("cpu") if args.compile == "full-run" else False
    before = loadavg()
    print(f"loadavg before: {before}", flush=True)
    args.work.mkdir(parents=True, exist_ok=True)
    prepare(args.work, args.users, methods)
    rows = []
    for method in methods:
        print(f"{method} (loadavg {loadavg()})", flush=True)
        rec = Recorder(args.warmup)
        conf, tr = run_method(method, args.work, args.warmup + args.steps, rec, compile_)
        rows.append(summarise(method, rec, conf, tr))
        del rec, conf
        gc.collect()  # drop this method's model before the next one loads
    after = loadavg()
    text = (f"`python benchmarks/method_train_throughput.py --methods {','.join(methods)} --warmup {args.warmup} "
            f"--steps {args.steps} --threads {args.threads} --users {args.users} --compile {args.compile}`; "
            f"SmolLM2-135M-Instruct, model.dtype auto ({torch.get_num_threads()} torch thread(s)); "
            f"own-loop train.compile={compile_}; loadavg before `{before}`, after `{after}`\n\n" + table(rows)
            + "\nWarm-up step seconds: " + "; ".join(f"{r['method']} {r['warmup_s']}" for r in rows) + "\n")
    print("\n" + text)
    args.out.write_text(text)
    (args.out.with_suffix(".json")).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
