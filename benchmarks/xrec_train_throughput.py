"""XRec-adapter training throughput with a frozen SmolLM2 on CPU, as a fraction of peak FLOP/s.

    python benchmarks/xrec_train_throughput.py [--steps 6] [--batch_size 8] [--threads 2] [--profile]
        [--variants eager,compile,bf16,compile_bf16,bf16w,compile_bf16w]

The step is `train_explainer`'s: XRec prompts (Amazon-books `tst.pkl` records) and their
explanations, batches from `length_bucketed_order` (as `train_loop` draws them), `XRec.encode`
(left padding, prompt masked out of the labels), `XRec.forward`, backward, Adam on the adapters.
The LLM is frozen, so backward computes activation gradients only (no weight gradients); it
still runs through all 30 layers because the adapted vectors enter every layer's q/k/v.

Model FLOPs per step (useful work, padding excluded), per row of L real tokens of which t are
targets: 4·N·L (N = 106.2M non-embedding matmul weights; 2 forward + 2 backward-to-input)
+ 12·layers·H·L² (attention scores and values, forward and backward; PaLM's convention, no
causal discount) + 4·H·V·t (LM head on the target positions only: the loss needs no more).
The CPU's peak is the best fp32 `torch.mm` (2048², same thread count) measured between the
training steps, so machine load affects both; the table shows tokens/s, model FLOP/s and the
fraction of that peak, plus the padding overhead. --profile prints torch.profiler's top ops.

`--variants` runs each timed batch once per variant, the order reversed on alternate steps, so
machine load hits all alike: eager fp32 (the reference), `compile` (`TrainConfig.compile`:
`torch.compile` of each decoder layer, hooks traced in; compiled once in the warm-up, not timed),
`bf16` (`TrainConfig.bf16`: bfloat16 autocast), `bf16w` (the frozen LLM's weights stored in
bfloat16, `--model.dtype bfloat16`, adapters fp32: no per-step weight casts) and `compile_`
combinations of these. bf16 variants are reported against the bf16 `torch.mm` peak as well
(AMX on this CPU), which is the honest denominator for them. After the steps, the same linears'
shapes are timed alone at the step's median padded token count (forward and backward to the
input): the bf16 "model-shape rate" is the most a step of this 576-wide model could reach if
attention, norms and the optimizer took no time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explain_throughput import build_explainer  # noqa: E402

from whyrec.llm.collate import length_bucketed_order  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def emulated(dtype) -> bool:
    """bf16 on a CPU without native bf16 (AVX2 only): its matmuls run ~500x slower than fp32, so
    its peaks would take minutes to time and mean nothing; they read nan instead."""
    from whyrec.llm.precision import cpu_has_bf16

    return dtype == torch.bfloat16 and not cpu_has_bf16()


def peak_matmul_flops(n: int = 2048, reps: int = 3, dtype=torch.float32) -> float:
    if emulated(dtype):
        return float("nan")
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        tic = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - tic)
    return 2 * n**3 / best


def shape_peak_flops(conf, tokens: int, dtype=torch.float32, reps: int = 3) -> float:
    """FLOP/s of the model's own matmuls at `tokens` rows: each decoder linear's forward (x W^T) and
    its backward to the input (g W), timed alone at its best of `reps`, FLOP-weighted. The 2048²
    peak is what the CPU can do; this is what it can do on a 576-wide model's shapes, the ceiling a
    training step could reach if everything but the linears took no time."""
    import torch.nn.functional as F

    if emulated(dtype):
        return float("nan")
    h, inter = conf.hidden_size, conf.intermediate_size
    head = getattr(conf, "head_dim", None) or h // conf.num_attention_heads
    q, kv = conf.num_attention_heads * head, conf.num_key_value_heads * head
    flops = seconds = 0.0
    for n_in, n_out, count in ((h, q, 1), (h, kv, 2), (q, h, 1), (h, inter, 2), (inter, h, 1)):
        x, w, g = torch.randn(tokens, n_in, dtype=dtype), torch.randn(n_out, n_in, dtype=dtype), torch.randn(tokens, n_out, dtype=dtype)
        for fn, args in ((F.linear, (x, w)), (torch.mm, (g, w))):
            fn(*args)
            best = float("inf")
            for _ in range(reps):
                tic = time.perf_counter()
                fn(*args)
                best = min(best, time.perf_counter() - tic)
            flops, seconds = flops + count * 2 * tokens * n_in * n_out, seconds + count * best
    return flops / seconds


def model_flops(conf, batch: dict) -> tuple[float, float, int, int]:
    """(useful FLOPs, executed FLOPs incl. padding, real tokens, padded tokens) of one step."""
    h, layers, vocab = conf.hidden_size, conf.num_hidden_layers, conf.vocab_size
    head = getattr(conf, "head_dim", None) or h // conf.num_attention_heads
    q, kv = conf.num_attention_heads * head, conf.num_key_value_heads * head
    n_matmul = layers * (h * q + 2 * h * kv + q * h + 3 * h * conf.intermediate_size)
    lengths = batch["attention_mask"].sum(1).tolist()
    targets = (batch["labels"] != -100).sum(1).tolist()
    useful = sum(4 * n_matmul * L + 12 * layers * q * L * L + 4 * h * vocab * t for L, t in zip(lengths, targets))
    B, T = batch["input_ids"].shape  # XRec.forward runs the LM head on the target positions only
    executed = B * (4 * n_matmul * T + 12 * layers * q * T * T) + 4 * h * vocab * sum(targets)
    return useful, executed, sum(lengths), B * T


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--steps", type=int, default=6, help="timed steps (after one warm-up step)")
    p.add_argument("--batch_size", type=int, default=8, help="whyrec's TrainConfig default: 8")
    p.add_argument("--max_target_tokens", type=int, default=96)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--examples", type=int, default=400, help="records to draw batches from")
    p.add_argument("--variants", default="eager", help="comma list of eager, compile, bf16, compile_bf16, bf16w, compile_bf16w")
    p.add_argument("--profile", action="store_true", help="profile two extra steps with torch.profiler")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    expl, users, items = build_explainer(args.shared, args.examples, args.seed)
    from whyrec.data.xrec import xrec_records

    records = xrec_records(args.shared / "xrec-amazon").sample(args.examples, random_state=args.seed)
    module, conf = expl.module, expl.module.llm.config
    prompts, targets = expl.prompts(users, items), records["explanation"].astype(str).tolist()
    user_vec, item_vec = expl.vectors(users, items)
    lengths = [len(a) + len(b) for a, b in zip(prompts, targets)]
    batches = length_bucketed_order(lengths, args.batch_size, torch.Generator().manual_seed(args.seed))
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)
    module.train()
    modules, opts = {"fp32": module}, {"fp32": opt}
    if "bf16w" in args.variants:  # a bf16-weight copy of the LLM with the same adapters
        twin = build_explainer(args.shared, args.examples, args.seed, "bfloat16")[0].module
        twin.load_state_dict(module.adapter_state(), strict=False)
        twin.train()
        modules["bf16w"] = twin
        opts["bf16w"] = torch.optim.Adam([p for p in twin.parameters() if p.requires_grad], lr=1e-4)

    from contextlib import ExitStack

    from whyrec.llm.load import compiled_decoder_layers

    def step(idx, variant="eager"):
        key = "bf16w" if "bf16w" in variant else "fp32"
        mod, op = modules[key], opts[key]
        with ExitStack() as stack:
            if "compile" in variant:
                stack.enter_context(compiled_decoder_layers(mod.llm))
            if "bf16" in variant.replace("bf16w", ""):
                stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
            batch = mod.encode([prompts[k] for k in idx], [targets[k] for k in idx], args.max_target_tokens)
            loss = mod(batch["input_ids"], batch["attention_mask"], batch["labels"], user_vec[idx], item_vec[idx])
            op.zero_grad(set_to_none=True)
            loss.backward()
            op.step()
        return batch, loss.item()

    variants = args.variants.split(",")
    warm = {}
    for v in variants:  # warm-up (and compilation) on the first batch
        tic = time.perf_counter()
        step(batches[0], v)
        warm[v] = time.perf_counter() - tic
        print(f"warm-up {v}: {warm[v]:.1f} s", flush=True)
    rows = {v: [] for v in variants}
    peaks, peaks16 = [peak_matmul_flops()], [peak_matmul_flops(dtype=torch.bfloat16)]
    for k in range(1, args.steps + 1):
        for v in (variants if k % 2 else variants[::-1]):
            tic = time.perf_counter()
            batch, loss = step(batches[k], v)
            seconds = time.perf_counter() - tic
            useful, executed, real, padded = model_flops(conf, batch)
            rows[v].append({"seconds": seconds, "useful": useful, "executed": executed, "real": real, "padded": padded,
                            "targets": int((batch["labels"] != -100).sum()), "loss": loss})
            print(f"step {k} {v}: {tuple(batch['input_ids'].shape)} {seconds:.2f} s, loss {loss:.3f}, "
                  f"{useful / seconds / 1e9:.1f} GFLOP/s", flush=True)
        peaks.append(peak_matmul_flops())
        peaks16.append(peak_matmul_flops(dtype=torch.bfloat16))
        for v in variants:  # each step against the better of its adjacent peaks
            rows[v][-1]["peak"], rows[v][-1]["peak16"] = max(peaks[-2:]), max(peaks16[-2:])

    tokens = int(statistics.median(x["padded"] for x in rows[variants[0]]))
    shape32 = max(shape_peak_flops(conf, tokens) for _ in range(2))
    shape16 = max(shape_peak_flops(conf, tokens, torch.bfloat16) for _ in range(2))
    trainable = sum(p.numel() for p in params)
    print(f"\nSmolLM2-135M-Instruct fp32 frozen, XRec adapters ({trainable:,} trainable), batch {args.batch_size}, "
          f"{args.steps} steps per variant, torch threads {args.threads}\n")
    print(f"peak matmul (torch.mm 2048², median of {len(peaks)}): fp32 {statistics.median(peaks) / 1e9:.1f} GFLOP/s, "
          f"bf16 {statistics.median(peaks16) / 1e9:.1f} GFLOP/s; the model's own linears at {tokens} rows "
          f"(forward and backward to the input, measured after the steps): fp32 {shape32 / 1e9:.1f}, "
          f"bf16 {shape16 / 1e9:.1f} GFLOP/s\n")
    if emulated(torch.bfloat16):
        print("(no native bf16 on this CPU, so `model.dtype auto` trains in fp32: bf16 peaks not timed, "
              "their columns read nan)\n")
    print("| variant | step (s, mean) | real tok/s | target tok/s | padding | model GFLOP/s | "
          "% of fp32 peak | % of bf16 peak | % of the bf16 model-shape rate | speed-up vs eager (median per step) | warm-up (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for v in variants:
        r = rows[v]
        secs = sum(x["seconds"] for x in r)
        frac = statistics.median(x["useful"] / x["seconds"] / x["peak"] for x in r)
        frac16 = statistics.median(x["useful"] / x["seconds"] / x["peak16"] for x in r)
        speed = statistics.median(a["seconds"] / b["seconds"] for a, b in zip(rows[variants[0]], r))
        print(f"| {v} | {secs / len(r):.2f} | {sum(x['real'] for x in r) / secs:.0f} | "
              f"{sum(x['targets'] for x in r) / secs:.0f} | {sum(x['padded'] for x in r) / sum(x['real'] for x in r):.3f} | "
              f"{sum(x['useful'] for x in r) / secs / 1e9:.1f} | {100 * frac:.1f}% | {100 * frac16:.1f}% | "
              f"{100 * sum(x['useful'] for x in r) / secs / shape16:.1f}% | "
              f"{speed:.2f}× | {warm[v]:.0f} |")
    print(f"\n(speed-up is against {variants[0]}; goal: ≥ 40% of peak; losses per variant, last step: "
          + ", ".join(f"{v} {rows[v][-1]['loss']:.4f}" for v in variants) + ")")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for k in range(args.steps + 1, args.steps + 3):
                step(batches[k % len(batches)], variants[-1])
        print("\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=48))


if __name__ == "__main__":
    main()
