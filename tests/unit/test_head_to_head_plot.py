"""benchmarks/head_to_head.py draws comparison.json's main table and one row of panels per `subsets`
entry (an external row covering part of the pairs, the others rescored on them), and `--plot-only`
redraws the png from docs/results/<dataset>.json without running anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import benchmark_script

pytest.importorskip("matplotlib")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "head_to_head.py"


def _script():
    return benchmark_script("head_to_head")


def _row(bleu4: float, *, bert: bool = True, grounded: bool = False) -> dict:
    metrics = {"pepler": {"bleu4": bleu4, "rougeL_f": 2 * bleu4},
               "intervals": {"bleu4": [bleu4 - 1, bleu4 + 1]}, "mispaired": {"bleu4": bleu4 / 2}}
    if bert:
        metrics["bertscore"] = {"bertscore_f1": 0.6}
    if grounded:
        metrics["grounding"] = {"hallucination_rate": 0.25, "checked_claims": 8}
    return {"metrics": metrics, "train": None, "generate_s_per_pair": None}


def _comparison(subsets: int) -> dict:
    rows = {"xrec": _row(10.0), "zero-shot": _row(5.0, grounded=True)}
    subs = [{"n_pairs": 3, "of_pairs": 6, "pair_indices": [0, 2, 4], "external": {f"ext{k}": f"ext{k}.ref"},
             "rows": {f"ext{k}": _row(12.0, bert=False), **rows}} for k in range(subsets)]
    return {"n_pairs": 6, "rows": rows, **({"subsets": subs} if subs else {})}


def _titles(fig) -> list[str]:
    return [sub.texts[0].get_text() for sub in fig.subfigs]  # a subfigure's suptitle is its only text


@pytest.mark.parametrize("subsets", [0, 1, 2])
def test_plot_draws_a_row_of_panels_per_table(tmp_path: Path, subsets: int) -> None:
    fig = _script().plot(_comparison(subsets), tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 0
    # 4 metrics (BLEU-4, ROUGE-L, BERTScore, false claims) are present in some row of some table
    assert len(fig.axes) == 4 * (1 + subsets)
    assert _titles(fig)[1:] == [f"On the 3 pairs ext{k} covers" for k in range(subsets)]
    assert _titles(fig)[0].startswith("All 6 test pairs")
    # a subset panel lists the external row first, then every main-table row rescored
    labels = [t.get_text() for t in fig.subfigs[-1].axes[0].get_yticklabels()]
    assert labels == ([f"ext{subsets - 1}", "xrec", "zero-shot"] if subsets else ["xrec", "zero-shot"])


def test_plot_only_redraws_from_docs_json(tmp_path: Path) -> None:
    (tmp_path / "xrec-amazon.json").write_text(json.dumps(_comparison(1)))
    (tmp_path / "other.json").write_text(json.dumps(_comparison(0)))
    done = subprocess.run([sys.executable, str(SCRIPT), "--plot-only", "--docs", str(tmp_path),
                           "--work", str(tmp_path / "never")], capture_output=True, text=True, check=True)
    assert (tmp_path / "xrec-amazon.png").stat().st_size > 0
    assert not (tmp_path / "never").exists() and "$ whyrec" not in done.stdout  # nothing ran
    assert not (tmp_path / "other.png").exists()  # not a head-to-head dataset and not asked for
    subprocess.run([sys.executable, str(SCRIPT), "--plot-only", "--docs", str(tmp_path), "--datasets", "other"],
                   check=True, capture_output=True)
    assert (tmp_path / "other.png").stat().st_size > 0


def test_plot_only_without_json_fails_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--plot-only", "--docs", str(tmp_path),
                           "--datasets", "ml-100k"], capture_output=True, text=True)
    assert done.returncode != 0 and not (tmp_path / "ml-100k.png").exists()
    assert done.stderr.strip().count("\n") == 0 and "ml-100k.json" in done.stderr
