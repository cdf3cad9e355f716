"""XRec-amazon with XRec's published 7B outputs as extra training targets (docs/results.md 5f).

    python benchmarks/xrec_amazon_teacher_targets.py [--data runs/h2h/xrec-amazon/data] [--out runs/xa-distill-data]

Copies a prepared XRec-amazon folder and appends, for every pair of its TRAIN split, XRec's
Llama-2-7B explanation (`tst_pred.pkl`, re-linked to the pair through `tst_ref.pkl` by reference
text) as a second explanation record: sequence-level distillation from the system issue 20 item 5
asks to beat. Test pairs and their 7B outputs are left out. Then train and score on the new folder
with the command in docs/results.md 5f.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "runs" / "h2h" / "xrec-amazon" / "data")
    p.add_argument("--xrec", type=Path, default=REPO.parent / "shared" / "data" / "xrec-amazon")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "xa-distill-data")
    args = p.parse_args()
    import pandas as pd

    from whyrec.eval.readers import read_texts

    if not (args.data / "texts.parquet").is_file():
        raise SystemExit(f"{args.data} has no texts.parquet: prepare it as docs/results.md 5e says")
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; remove it first")
    predictions = read_texts(str(args.xrec / "tst_pred.pkl"), role="prediction")
    references = read_texts(str(args.xrec / "tst_ref.pkl"), role="reference")
    by_reference: dict[str, str] = {}
    for pred, ref in zip(predictions, references, strict=True):
        by_reference.setdefault(str(ref).strip(), str(pred))
    texts = pd.read_parquet(args.data / "texts.parquet")
    train = texts[texts["split"] == "train"]
    teacher = train.assign(explanation=[by_reference.get(e.strip()) for e in train["explanation"]])
    teacher = teacher[teacher["explanation"].fillna("").str.strip() != ""]
    tmp = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(args.data, tmp)
    pd.concat([texts, teacher], ignore_index=True).to_parquet(tmp / "texts.parquet", index=False)
    tmp.rename(args.out)
    words = teacher["explanation"].str.split().str.len().mean()
    print(f"{args.out}: {len(train)} training pairs, {len(teacher)} 7B targets added ({words:.1f} words on average); "
          f"{int((texts['split'] == 'test').sum())} test pairs unchanged")


if __name__ == "__main__":
    main()
