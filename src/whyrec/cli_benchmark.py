"""`whyrec benchmark ...`: methods compared on the same pairs of one dataset (`whyrec.benchmark`)."""

from __future__ import annotations

import sys
from pathlib import Path

from whyrec.cli_common import split_specs
from whyrec.config import (
    GaVaMoEConfig,
    GenerationConfig,
    LightGCNConfig,
    ModelConfig,
    PEPLERConfig,
    TrainConfig,
    VaeGmmConfig,
    XRecConfig,
)
from whyrec.config_encoders import MFConfig
from whyrec.config_methods import RecExplainerConfig


def benchmark_explain(data: str, out: str, methods: str = "all", encoder: str | None = None,
                      runs: str | None = None, external: str | None = None, model: ModelConfig = ModelConfig(),
                      xrec: XRecConfig = XRecConfig(), pepler: PEPLERConfig = PEPLERConfig(),
                      train: TrainConfig = TrainConfig(max_minutes=10), lightgcn: LightGCNConfig = LightGCNConfig(),
                      generation: GenerationConfig = GenerationConfig(max_new_tokens=80), split: str = "test",
                      max_pairs: int | None = 200, seed: int = 0, smooth: bool = False, bertscore: bool = False,
                      device: str = "auto", vae: str | None = None, vae_config: VaeGmmConfig = VaeGmmConfig(),
                      gavamoe: GaVaMoEConfig = GaVaMoEConfig(), groups: bool = True, overwrite: bool = False,
                      ablations: str | None = None, recexplainer: RecExplainerConfig = RecExplainerConfig(),
                      target: str | None = None, mf: MFConfig = MFConfig()):
    """Head-to-head: every explanation method on the same pairs of one dataset, one comparison table.

    Writes out/comparison.md and out/comparison.json (+ predictions/ and methods/ folders). Re-running
    reuses trained methods and cached predictions.

    Args:
        data: dataset folder with explanation records (`whyrec data prepare` / `whyrec data profiles`).
        out: benchmark folder.
        methods: comma-separated subset of xrec, xrec-lora, gavamoe, pepler-continuous, pepler-discrete,
            pepler-reg, recexplainer, zero-shot, retrieval (no LLM: the training explanation of the nearest
            training pair),
            or 'all' (methods the data cannot support are listed as skipped), or 'none'.
        encoder: LightGCN artifact for XRec (default: train one into out/encoder).
        vae: GaVaMoE stage-1 folder from `whyrec cluster` (default: train one into out/vae with --vae_config).
        target: RecExplainer's target model from `whyrec train encoder --encoder sasrec|mf` (default: an MF
            target trained into out/target on the training split with --mf; it needs timestamps).
        runs: comma-separated NAME=FOLDER of already-trained explainer or PEPLER folders to include.
        external: comma-separated NAME=PREDICTIONS[:REFERENCES] files of other systems (e.g. XRec's
            tst_pred.pkl:tst_ref.pkl; with references, rows are matched by reference text, and a
            file covering only part of the pairs is scored on those, beside every row rescored on them).
        split: split whose explanation records are scored.
        max_pairs: seeded sample of this many pairs (None: all).
        seed: seed of the pair sample.
        smooth: smoothed BLEU.
        bertscore: add BERTScore F1 (packaged MiniLM).
        device: auto, cpu or cuda.
        groups: also score every system by user-activity quintile and zero-shot users
            (out/by_activity.md and .png): the sparse-user robustness check.
        overwrite: replace --out if another command made it (rebuilt beside it, then renamed into place).
        ablations: comma-separated CF ablations run for every row with a trained folder (methods and
            --runs), on the same pairs: shuffle-users, shuffle-items, random, no-cf, no-profiles, or 'all'.
            Each row's table (change vs the full method, 95% bootstrap interval) goes into
            comparison.md/.json; texts and tables under out/ablations/<row>/.
    """
    from whyrec.benchmark import benchmark_explain as _bench
    from whyrec.benchmark import explanation_methods

    chosen = {"all": explanation_methods(), "none": ()}.get(methods, [m.strip() for m in methods.split(",") if m.strip()])
    result = _bench(data, out, methods=chosen, encoder=encoder, runs=split_specs(runs),
                    external=split_specs(external), model=model, xrec=xrec, pepler=pepler, train=train,
                    lightgcn=lightgcn, generation=generation, split=split, max_pairs=max_pairs, seed=seed,
                    smooth=smooth, bertscore=bertscore, device=device, vae=vae, vae_config=vae_config,
                    gavamoe=gavamoe, groups=groups, overwrite=overwrite, ablations=ablations or (),
                    recexplainer=recexplainer, target=target, mf=mf)
    print((Path(out) / "comparison.md").read_text(), end="")
    if (Path(out) / "by_activity.md").exists():
        print("\nBy user activity:\n" + (Path(out) / "by_activity.md").read_text(), end="")
    if result["skipped"]:
        print(f"skipped: {result['skipped']}", file=sys.stderr)
