"""XRec data folders (Ma et al., "XRec: Large Language Models for Explainable Recommendation", 2024).

Source: github HKUDS/XRec @79e2cd4, `data/{amazon,google,yelp}/` (METHODS §3.5):
- `para_dict.pickle`: {trn,val,tst}_user_nb (per user id, the item ids it interacted with),
  {trn,val,tst}_item_nb (the transpose), user_num, item_num. Amazon: 288,671 train edges.
- `total_{trn,val,tst}.csv`: `user,item[,Time]` edges of the interaction graph.
- `{trn,val,tst}.pkl`: explanation records (pandas DataFrame or list of dicts) with uid, iid,
  title, user_summary, item_summary, explanation. XRec splits them separately from the graph,
  so most test records are TRAIN edges of the graph (2,376 of amazon's 3,000).

Because records and graph edges are split independently, the records are kept apart from
`interactions`: they become `RecDataset.texts` (user, item, explanation, split). Titles and
item summaries go to `items` (title, profile), user summaries to `users.profile`. Ids stay
XRec's integers written as strings, with the identity index ("17" -> 17), so embeddings
trained here line up with XRec's own.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.safe_pickle import builtins_hint, load_plain_pickle, safe_load_pickle
from whyrec.data.splits import sample_users
from whyrec.utils import WhyrecError

RECORD_COLUMNS = ("uid", "iid", "title", "user_summary", "item_summary", "explanation")
RECORD_FILES = {S.TRAIN: "trn", S.VALID: "val", S.TEST: "tst"}
TEXT_COLUMNS = (S.USER, S.ITEM, S.EXPLANATION, S.SPLIT)


def records_hint(path: Path) -> str:
    """How to turn a refused records pickle into one whyrec reads (a list of plain dicts)."""
    return (f"if you trust it, re-save it as plain records: python -c \"import pickle,pandas as pd; f='{path}'; "
            "pickle.dump(pd.read_pickle(f).to_dict('records'), open(f,'wb'))\"")


def xrec_records(path: str | Path, required: tuple[str, ...] = RECORD_COLUMNS) -> pd.DataFrame:
    """XRec explanation records (tst.pkl style) from a .pkl file, or `tst.pkl` in a folder.

    Accepts a pickled DataFrame or list of dicts (restricted unpickling: no code runs).
    Raises a WhyrecError naming missing columns and the columns that do exist.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "tst.pkl"
    data = safe_load_pickle(path, hint=records_hint(path))
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        data = pd.DataFrame.from_records(data)
    if not isinstance(data, pd.DataFrame):
        raise WhyrecError(f"{path}: expected a DataFrame or a list of dicts, got {type(data).__name__}")
    if len(data) == 0:
        raise WhyrecError(f"{path}: no records")
    missing = [c for c in required if c not in data.columns]
    if missing:
        raise WhyrecError(f"{path}: missing column(s) {', '.join(missing)} "
                          f"(have: {', '.join(map(str, data.columns)) or 'none'})")
    return data.reset_index(drop=True)


def _para_dict(path: Path) -> dict | None:
    if not path.exists():
        return None
    para = load_plain_pickle(path, hint=builtins_hint(path))  # only lists, dicts and ints: no globals at all
    keys = ("trn_user_nb", "user_num", "item_num")
    if not isinstance(para, dict) or any(k not in para for k in keys):
        have = ", ".join(map(str, para)) if isinstance(para, dict) else type(para).__name__
        raise WhyrecError(f"{path}: expected a dict with {', '.join(keys)} (have: {have})")
    return para


def _edges_from_para(para: dict, split: str, path: Path) -> pd.DataFrame:
    """Edges of one split from `{split}_user_nb`, a list indexed by user id of item-id lists."""
    lists = para[f"{RECORD_FILES[split]}_user_nb"]
    if len(lists) != para["user_num"]:
        raise WhyrecError(f"{path}: {RECORD_FILES[split]}_user_nb has {len(lists)} entries but user_num is "
                          f"{para['user_num']}; expected one item list per user id")
    users = [u for u, items in enumerate(lists) for _ in items]
    items = [int(i) for row in lists for i in row]
    return pd.DataFrame({S.USER: users, S.ITEM: items})


def _edges_from_csv(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise WhyrecError(f"{path} is not a readable CSV ({type(e).__name__}: {e})") from None
    missing = [c for c in (S.USER, S.ITEM) if c not in frame]
    if missing or len(frame) == 0:
        raise WhyrecError(f"{path}: expected columns user,item[,Time] with rows "
                          f"(have: {', '.join(map(str, frame.columns)) or 'none'}, {len(frame)} rows)")
    out = frame[[S.USER, S.ITEM]].astype("int64")
    if "Time" in frame:  # e.g. "12 5, 2015": month day, year
        when = pd.to_datetime(frame["Time"], format="%m %d, %Y", errors="coerce")
        seconds = (when - pd.Timestamp("1970-01-01")).dt.total_seconds()
        out[S.TIMESTAMP] = seconds.round().astype("Int64")
    return out


def _graph(root: Path, para: dict | None) -> pd.DataFrame:
    parts = []
    for split, short in RECORD_FILES.items():
        csv = root / f"total_{short}.csv"
        if csv.exists() and not (split == S.TRAIN and para is not None):
            edges = _edges_from_csv(csv)
        elif para is not None and f"{short}_user_nb" in para:
            edges = _edges_from_para(para, split, root / "para_dict.pickle")
        elif split == S.TRAIN:
            raise WhyrecError(f"{root}: no training graph; expected para_dict.pickle or total_trn.csv")
        else:
            continue
        parts.append(edges.assign(**{S.SPLIT: split}))
    graph = pd.concat(parts, ignore_index=True)
    return graph[[c for c in (S.USER, S.ITEM, S.TIMESTAMP, S.SPLIT) if c in graph]]


def _records(root: Path) -> pd.DataFrame | None:
    frames = [xrec_records(root / f"{short}.pkl", required=("uid", "iid", S.EXPLANATION)).assign(**{S.SPLIT: split})
              for split, short in RECORD_FILES.items() if (root / f"{short}.pkl").exists()]
    return pd.concat(frames, ignore_index=True) if frames else None


def _first_text(records: pd.DataFrame | None, key: str, col: str, n: int) -> list:
    """Per id 0..n-1, the first non-empty `col` value among the records (None if absent)."""
    out = [None] * n
    if records is None or col not in records:
        return out
    for k, text in records[[key, col]].dropna().drop_duplicates(key).itertuples(index=False):
        out[int(k)] = str(text)
    return out


def _check_range(frame: pd.DataFrame, n_users: int, n_items: int, where: str) -> None:
    bad_u = frame[S.USER].astype("int64").pipe(lambda s: (s < 0) | (s >= n_users)).sum()
    bad_i = frame[S.ITEM].astype("int64").pipe(lambda s: (s < 0) | (s >= n_items)).sum()
    if bad_u or bad_i:
        raise WhyrecError(f"{where}: {bad_u} user and {bad_i} item ids outside 0..user_num-1 / 0..item_num-1 "
                          f"({n_users} users, {n_items} items); the files come from different datasets?")


def load_xrec(path: str | Path, max_users: int | None = None, seed: int = 42) -> RecDataset:
    """An XRec data folder as a RecDataset with its own graph splits and `texts` records.

    Args:
        path: folder with para_dict.pickle and/or total_{trn,val,tst}.csv, and {trn,val,tst}.pkl.
        max_users: keep only a seeded sample of users' edges and records (ids keep their index).
    """
    root = Path(path)
    if not root.is_dir():
        raise WhyrecError(f"XRec folder {root} not found; pass the folder holding para_dict.pickle and tst.pkl")
    para = _para_dict(root / "para_dict.pickle")
    graph, records = _graph(root, para), _records(root)
    ids = [graph] + ([records.rename(columns={"uid": S.USER, "iid": S.ITEM})] if records is not None else [])
    n_users = int(para["user_num"]) if para else int(max(f[S.USER].max() for f in ids)) + 1
    n_items = int(para["item_num"]) if para else int(max(f[S.ITEM].max() for f in ids)) + 1
    for frame, where in zip(ids, ("graph", "records"), strict=False):
        _check_range(frame, n_users, n_items, f"{root} {where}")
    texts = None
    if records is not None:
        texts = records.rename(columns={"uid": S.USER, "iid": S.ITEM})[list(TEXT_COLUMNS)].astype({S.USER: str, S.ITEM: str})
    if max_users is not None:
        graph = sample_users(graph.astype({S.USER: str}), max_users, seed)
        texts = texts[texts[S.USER].isin(set(graph[S.USER]))] if texts is not None else None
    items = pd.DataFrame({S.ITEM: [str(i) for i in range(n_items)],
                          S.TITLE: _first_text(records, "iid", "title", n_items),
                          S.PROFILE: _first_text(records, "iid", "item_summary", n_items)})
    users = pd.DataFrame({S.USER: [str(u) for u in range(n_users)],
                          S.PROFILE: _first_text(records, "uid", "user_summary", n_users)})
    meta = {"source": "xrec", "folder": root.name, "max_users": max_users,
            "records": {k: int(v) for k, v in texts[S.SPLIT].value_counts().items()} if texts is not None else {}}
    return RecDataset(graph.reset_index(drop=True), items, users, user2idx={str(u): u for u in range(n_users)},
                      item2idx={str(i): i for i in range(n_items)}, meta=meta,
                      texts=None if texts is None else texts.reset_index(drop=True))
