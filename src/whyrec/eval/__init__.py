"""Evaluation of generated explanations.

- `whyrec.eval.text`: PEPLER's text metrics (Li et al., TOIS 2023) re-implemented from their
  definitions (corpus BLEU, set-based ROUGE-N, ROUGE-L with beta = P/R, USR), plus the
  standard sacrebleu / rouge-score numbers for comparison with other papers.
- `whyrec.eval.readers`: read predictions/references from txt, JSONL, CSV, Parquet or pickle.
- `whyrec.eval.report`: compute both metric families and write `metrics.json` + `report.md`.

Nothing heavy is imported here; import the submodules you need.
"""
