"""The tiny served run shared by the serve tests: 60 MovieLens users, tiny LightGCN, tiny XRec.

Built once per test session under pytest's base temp folder (both test files ask for the same
path, so the second one reuses it).
"""

from pathlib import Path

from conftest import REPO, require_distribution


def tiny_run(tmp_path_factory) -> Path:
    from whyrec.cli import main

    require_distribution("recbole", "recbole/dataset_example/ml-100k/ml-100k.inter")
    root = tmp_path_factory.getbasetemp() / "serve-tiny-run"
    if (root / "explainer" / "config.json").exists():
        return root
    data, enc, expl = root / "data", root / "encoder", root / "explainer"
    assert main(["data", "prepare", "--source", "ml-100k", "--out", str(data), "--max_users", "60", "--seed", "1"]) == 0
    assert main(["train", "encoder", "--data", str(data), "--out", str(enc),
                 "--config", str(REPO / "configs/tiny/lightgcn.yaml")]) == 0
    assert main(["train", "explainer", "--method", "xrec", "--data", str(data), "--encoder", str(enc),
                 "--out", str(expl), "--config", str(REPO / "configs/tiny/xrec.yaml")]) == 0
    return root
