"""The reference points every `whyrec benchmark explain` table needs beside its methods.

- The retrieval baseline (no LLM): each benchmark pair (u, i) gets the training explanation of
  the most similar training (user, item) pair. Similarity is the cosine of the concatenated
  LightGCN user and item embeddings when the benchmark has an encoder, else the TF-IDF cosine of
  the pairs' profile text (user profile, item title and profile). A method that does not beat it
  has learnt nothing a lookup of the training data would not give.
- The mispaired floor: a row's own predictions scored against the references of other pairs (a
  seeded derangement). What a text metric gives a row above its floor is credit for content
  specific to the pair; a row at its floor is scored for the corpus template alone.
- Bootstrap intervals (`whyrec.eval.bootstrap`) and the false-claim rate (`whyrec.eval.grounding`)
  of every row, with the references' own rate beside them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from whyrec.data import schema as S
from whyrec.data.metadata import CAST, DIRECTOR, GENRE

RETRIEVAL = "retrieval"  # the row name --methods takes
_CHUNK = 256  # query pairs per similarity block: bounds memory at 256 x (training pairs)


def retrieval_unavailable(ds) -> str | None:
    try:
        train = ds.explanation_records(S.TRAIN)
    except Exception as e:  # no explanation column or no split: the message says which
        return str(e)
    return None if len(train) else "no training explanations to retrieve from"


def retrieval_row_name(encoder: str | None) -> str:
    return "retrieval (CF nearest pair)" if encoder else "retrieval (profile nearest pair)"


def nearest_pairs(query, cand, query_ids: Sequence[tuple[str, str]],
                  cand_ids: Sequence[tuple[str, str]]) -> list[int]:
    """Index of the most cosine-similar candidate row for each query row, never a candidate with
    the query's own (user, item): the text written for that very pair would leak its reference
    (-1 when no other candidate exists). Ties go to the earliest candidate: deterministic."""
    from scipy import sparse
    from sklearn.preprocessing import normalize

    # dense or sparse (TF-IDF over a large training split stays sparse); zero rows stay zero
    query, cand = normalize(query), normalize(cand)
    rows_of: dict[tuple[str, str], list[int]] = {}
    for j, key in enumerate(cand_ids):
        rows_of.setdefault(key, []).append(j)
    chosen: list[int] = []
    for start in range(0, query.shape[0], _CHUNK):
        sims = query[start:start + _CHUNK] @ cand.T  # [chunk, candidates]
        sims = sims.toarray() if sparse.issparse(sims) else np.array(sims, dtype=np.float64)
        for row, key in enumerate(query_ids[start:start + _CHUNK]):
            own = rows_of.get(key)
            if own:
                sims[row, own] = -np.inf
            best = int(np.argmax(sims[row]))
            chosen.append(best if np.isfinite(sims[row, best]) else -1)
    return chosen


def _cf_vectors(enc, frame: pd.DataFrame) -> np.ndarray:
    """[len(frame), 2d] concatenated LightGCN user and item embeddings of a loaded encoder; zeros
    for an id the encoder never saw (a cold user is then matched on its item alone)."""
    users, items = enc.user_emb.float().numpy(), enc.item_emb.float().numpy()

    def rows(table: np.ndarray, index: dict[str, int], ids) -> np.ndarray:
        out = np.zeros((len(ids), table.shape[1]), dtype=np.float64)
        for k, key in enumerate(ids):
            if (j := index.get(str(key))) is not None:
                out[k] = table[j]
        return out

    return np.hstack([rows(users, enc.user2idx, frame[S.USER].astype(str)),
                      rows(items, enc.item2idx, frame[S.ITEM].astype(str))])


def _profile_texts(ds, frame: pd.DataFrame) -> list[str]:
    users, titles, items = ds.user_text(S.PROFILE), ds.item_text(S.TITLE), ds.item_text(S.PROFILE)
    return [f"{users.get(u, '')} {titles.get(i, '')} {items.get(i, '')}"
            for u, i in zip(frame[S.USER].astype(str), frame[S.ITEM].astype(str))]


def _profile_vectors(ds, queries: pd.DataFrame, train: pd.DataFrame):
    """Sparse TF-IDF rows of the queries' and the training pairs' profile text."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    cand_text, query_text = _profile_texts(ds, train), _profile_texts(ds, queries)
    try:
        tfidf = TfidfVectorizer().fit(cand_text)
    except ValueError:  # no word in any profile: every pair is equally similar
        return np.zeros((len(queries), 1)), np.zeros((len(train), 1))
    return tfidf.transform(query_text), tfidf.transform(cand_text)


def retrieval_generator(ds, encoder: str | None):
    """A benchmark generator: pairs -> the training explanation of each pair's nearest training pair."""
    train = ds.explanation_records(S.TRAIN).reset_index(drop=True)
    texts = train[S.EXPLANATION].astype(str).tolist()
    cand_ids = list(zip(train[S.USER].astype(str), train[S.ITEM].astype(str)))
    enc = None
    if encoder:
        from whyrec.encoders.artifact import load_encoder

        enc = load_encoder(encoder)
    cand_cf = _cf_vectors(enc, train) if enc is not None else None

    def generate(pairs: pd.DataFrame) -> list[str]:
        ids = list(zip(pairs[S.USER].astype(str), pairs[S.ITEM].astype(str)))
        if cand_cf is not None:
            query, cand = _cf_vectors(enc, pairs), cand_cf
        else:
            query, cand = _profile_vectors(ds, pairs, train)
        return [texts[j] if j >= 0 else "" for j in nearest_pairs(query, cand, ids, cand_ids)]

    return generate


def grounding_supported(ds) -> bool:
    """Whether the grounding checker has facts to check claims against: item metadata (genres,
    people, real titles) or review feature words."""
    items = ds.items
    if any(col in items for col in (GENRE, DIRECTOR, CAST)) or S.FEATURE in ds.interactions:
        return True
    titles = ds.item_text(S.TITLE)
    return any(title and title != item for item, title in titles.items())


def grounding_summary(ds, texts: Sequence[str], pairs: pd.DataFrame) -> dict:
    from whyrec.eval.grounding import grounding_report

    return grounding_report(list(texts), pairs[S.USER].astype(str).tolist(), pairs[S.ITEM].astype(str).tolist(),
                            ds, max_examples=5)


def _bertscore_summary(per_pair) -> dict:
    """`BertScorer.__call__`'s summary (means and population stds) from per-pair [N, 3] scores."""
    scores = per_pair.double()
    keys = ("bertscore_p", "bertscore_r", "bertscore_f1")
    return ({k: float(scores[:, j].mean()) for j, k in enumerate(keys)}
            | {f"{k}_std": float(scores[:, j].std(correction=0)) for j, k in enumerate(keys)})


def floor_and_intervals(preds: Sequence[str], refs: Sequence[str], seed: int, smooth: bool,
                        scorer=None) -> dict:
    """{"bertscore"?, "mispaired", "intervals"} of one row. `scorer` is a loaded
    `whyrec.eval.bertscore.BertScorer` when BERTScore is on: its per-pair scores feed the summary,
    the floor and the interval from one pass each."""
    from whyrec.eval.bootstrap import bootstrap_intervals, derangement, pair_stats
    from whyrec.eval.text import pepler_text_metrics

    out: dict = {}
    f1 = None
    if scorer is not None:
        per_pair = scorer.score(preds, refs)
        out["bertscore"] = _bertscore_summary(per_pair) | scorer.settings()
        f1 = per_pair[:, 2].double().numpy()
    out["intervals"] = bootstrap_intervals(pair_stats(preds, refs, f1), seed=seed, smooth=smooth)
    if len(refs) >= 2:
        shuffled = [refs[j] for j in derangement(len(refs), seed)]
        pepler = pepler_text_metrics(preds, shuffled, smooth=smooth)
        floor = {"bleu4": pepler["bleu4"], "rougeL_f": pepler["rougeL_f"]}
        if scorer is not None:
            floor["bertscore_f1"] = float(scorer.score(preds, shuffled)[:, 2].double().mean())
        out["mispaired"] = floor
    return out
