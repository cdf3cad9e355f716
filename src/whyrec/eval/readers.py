"""Read generated or reference explanations from the files people actually have.

One text per row, in order: plain text (one per line), JSON lines / a JSON list, CSV/TSV,
Parquet, or a pickle (XRec ships `tst_pred.pkl` / `tst_ref.pkl` as pickled lists of
strings). Pickles go through `safe_load_pickle`, which runs no code from the file and refuses
anything but pandas/numpy/builtin objects. Every failure is one line naming the file and the fix.
Empty strings are kept: a model may generate nothing, and that must count against it.

Two PEPLER formats are recognised by name, so `whyrec evaluate` takes them as they are:

- `generated*.txt`, the text PEPLER (Li et al., TOIS 2023) and PETER write after testing:
  one block per test record, ``reference / prediction / blank`` (PEPLER's main.py,
  discrete.py, reg.py) or ``reference / context words / prediction / blank`` (PETER). The
  file holds both sides, so the caller says which one it wants (`role` or `column`).
- A PEPLER fold folder (`TripAdvisor/1/`, its test split) or an index file
  (`TripAdvisor/1/test.index`): the template sentences of `../reviews.pickle` in index
  order, which is the order PEPLER generates in. Use it as references.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from whyrec.utils import WhyrecError

# Columns tried, in order, when a table or JSON object has several and none was named.
PREFERRED_COLUMNS = ("prediction", "reference", "explanation", "text")
_FORMATS = {
    ".txt": "text",
    ".jsonl": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".pkl": "pickle",
    ".pickle": "pickle",
}


def read_texts(path: str | Path, column: str | None = None, role: str | None = None) -> list[str]:
    """Texts of `path`, one per row, in file order.

    Args:
        path: a .txt, .jsonl, .json, .csv, .tsv, .parquet/.pq or .pkl/.pickle file, PEPLER's
            `generated*.txt`, or a PEPLER fold folder / `.index` file.
        column: the column (or JSON key) holding the text; needed only when it is ambiguous.
        role: "prediction" or "reference": which side to take from a file that holds both
            (PEPLER's generated.txt); other formats ignore it.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".index":
        return read_pepler_split(path)
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise WhyrecError(
            f"{path}: unknown extension {path.suffix or '(none)'!r}; accepted: {', '.join(_FORMATS)}, "
            ".index or a PEPLER fold folder"
        )
    if not path.is_file():
        raise WhyrecError(f"{path} not found")
    if is_pepler_generated(path):
        # --column is shared by both files; it picks a field here only if it names one.
        fields = {f for layout in GENERATED_LAYOUTS.values() for f in layout}
        return read_pepler_generated(path, column if column in fields else role)
    reader = {
        "text": _read_txt,
        "jsonl": _read_jsonl,
        "json": _read_json,
        "csv": _read_csv,
        "parquet": _read_parquet,
        "pickle": _read_pickle,
    }[kind]
    return reader(path, column)


def _read_raw(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise WhyrecError(
            f"{path} is not UTF-8 text (byte {e.start}); is it a binary file?"
        ) from None


def _read_txt(path: Path, column: str | None) -> list[str]:
    # `column` is ignored: a line holds exactly one text. split("\n"), not splitlines():
    # generated text may contain \x0b, \x1c or \u2028, which splitlines would treat as line
    # ends and so shift every later pair.
    lines = [line.removesuffix("\r") for line in _read_raw(path).split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline ends the last line; it does not start a new one
    return lines


def _read_jsonl(path: Path, column: str | None) -> list[str]:
    lines = _read_raw(path).rstrip().split("\n")
    if lines == [""]:
        return []
    records = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            raise WhyrecError(
                f'{path} line {lineno} is blank; JSON lines need one value per line ("" for an empty text)'
            )
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise WhyrecError(
                f"{path} line {lineno} is not valid JSON ({e.msg}); expected one JSON value per line"
            ) from None
    return _from_records(records, path, column, unit="line")


def _read_json(path: Path, column: str | None) -> list[str]:
    try:
        data = json.loads(_read_raw(path))
    except json.JSONDecodeError:
        return _read_jsonl(path, column)  # many ".json" files are really JSON lines
    if isinstance(data, dict):  # {"prediction": [...], "reference": [...]}
        lists = [k for k, v in data.items() if isinstance(v, list)]
        data = data[choose_column(lists, lists, path, column)]
    if not isinstance(data, list):
        raise WhyrecError(
            f"{path} holds a JSON {type(data).__name__}; expected a list of strings or of objects"
        )
    return _from_records(data, path, column, unit="item")


def _from_records(records: list, path: Path, column: str | None, unit: str) -> list[str]:
    """Strings as they are; objects through one chosen key."""
    if not records:
        return []
    first = next((r for r in records if isinstance(r, dict)), None)
    if first is None:
        return _check_strings(records, path, unit)
    key = choose_column(
        [k for k, v in first.items() if isinstance(v, str)], list(first), path, column
    )
    values = []
    for i, record in enumerate(records):
        where = f"{unit} {i + 1 if unit == 'line' else i}"
        if not isinstance(record, dict):
            raise WhyrecError(
                f"{path} {where} is a {type(record).__name__}, not an object like the others"
            )
        if key not in record:
            raise WhyrecError(f"{path} {where} has no {key!r} field; every {unit} needs one")
        values.append(record[key])
    return _check_strings(values, path, unit)


def choose_column(
    text_columns: Sequence[str], all_columns: Sequence[str], path, column: str | None
) -> str:
    """`column` if given; else the only text column; else the one preferred name present."""
    listing = ", ".join(map(str, all_columns)) or "(none)"
    if column is not None:
        if column not in all_columns:
            raise WhyrecError(f"{path} has no column {column!r}; columns: {listing}")
        return column
    if len(all_columns) == 1:
        return all_columns[0]
    if len(text_columns) == 1:
        return text_columns[0]
    preferred = [c for c in PREFERRED_COLUMNS if c in all_columns]
    if len(preferred) == 1:
        return preferred[0]
    raise WhyrecError(
        f"{path}: cannot tell which column holds the text (columns: {listing}); pass --column"
    )


def _check_strings(values: Sequence, path, unit: str) -> list[str]:
    """Refuse None/NaN/numbers, naming the row (lines count from 1, rows and items from 0)."""
    offset = 1 if unit == "line" else 0
    for i, value in enumerate(values):
        if isinstance(value, str):
            continue
        where = f"{path} {unit} {i + offset}"
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise WhyrecError(
                f"{where} is missing ({value!r}), not text; fill or drop that row (empty strings are allowed)"
            )
        raise WhyrecError(
            f"{where} is {type(value).__name__} ({value!r:.40}), not text; fix or drop that row"
        )
    return [str(v) for v in values]  # numpy.str_ -> str


def _from_frame(frame, path: Path, column: str | None) -> list[str]:
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    text_columns = [c for c in columns if frame[c].map(lambda v: isinstance(v, str)).any()]
    key = choose_column(text_columns, columns, path, column)
    return _check_strings(frame[key].tolist(), path, "row")


def _read_csv(path: Path, column: str | None) -> list[str]:
    import pandas as pd

    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        # keep_default_na=False: an empty cell or the word "NA" is text here, not a missing value.
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise WhyrecError(
            f"{path} is not a readable {'TSV' if sep == chr(9) else 'CSV'} file ({str(e).strip()[:120]})"
        ) from None
    return _from_frame(frame, path, column)


def _read_parquet(path: Path, column: str | None) -> list[str]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError or others for a damaged file
        raise WhyrecError(
            f"{path} is not a readable Parquet file ({type(e).__name__}: {str(e)[:120]})"
        ) from None
    return _from_frame(frame, path, column)


def _read_pickle(path: Path, column: str | None) -> list[str]:
    import pandas as pd

    from whyrec.data.safe_pickle import safe_load_pickle

    data = safe_load_pickle(path, hint="if you trust it, convert it in a trusted Python to .jsonl or .txt "
                            "(one text per row) and pass that")
    if isinstance(data, pd.DataFrame):
        return _from_frame(data, path, column)
    if isinstance(data, pd.Series):
        return _check_strings(data.tolist(), path, "row")
    if hasattr(data, "ndim") and getattr(data, "ndim", 0) == 1:  # a 1-D numpy array
        data = data.tolist()
    if isinstance(data, list | tuple):
        return _check_strings(list(data), path, "row")
    raise WhyrecError(
        f"{path} holds a {type(data).__name__}; expected a list of strings, a pandas Series or a DataFrame"
    )


# ---------------------------------------------------------------- PEPLER files

# Fields of one generated.txt block by its length (the blank separator line included).
GENERATED_LAYOUTS = {3: ("reference", "prediction"), 4: ("reference", "context", "prediction")}


def is_pepler_generated(path: Path) -> bool:
    """PEPLER/PETER's default `--outf` is generated.txt; variants keep that prefix."""
    return path.suffix.lower() == ".txt" and path.stem.lower().startswith("generated")


def _generated_layout(lines: list[str], path: Path) -> tuple[int, list[str]]:
    """Block length (3: PEPLER, 4: PETER) whose separator lines are all blank, and the lines.

    A reading that needs no restored final blank line, then one whose references are all
    non-empty, wins; a tie (possible only for a few blank texts) is refused, not guessed.
    """
    readings = []
    for size in GENERATED_LAYOUTS:
        for restored in (False, True):  # an editor may have dropped the last blank line
            padded = lines + [""] if restored else lines
            if len(padded) % size == 0 and not any(padded[size - 1 :: size]):
                readings.append(((restored, not all(padded[::size])), size, padded))
    readings.sort(key=lambda r: r[0])
    if not readings or (len(readings) > 1 and readings[0][0] == readings[1][0]):
        raise WhyrecError(
            f"{path} is named like PEPLER's generated.txt but is not laid out as blocks of "
            "reference / prediction / blank lines (PEPLER) or reference / context / prediction / "
            "blank (PETER); rename it if it holds one text per line"
        )
    return readings[0][1], readings[0][2]


def read_pepler_generated(path: str | Path, field: str | None) -> list[str]:
    """One field ("reference", "prediction", or PETER's "context") of each generated.txt block."""
    path = Path(path)
    lines = [line.removesuffix("\r") for line in _read_raw(path).split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline
    if not any(lines):
        return []
    size, lines = _generated_layout(lines, path)
    fields = GENERATED_LAYOUTS[size]
    if field not in fields:
        raise WhyrecError(
            f"{path} holds {' and '.join(fields)} lines; say which to read "
            f"(role or column: {', '.join(repr(f) for f in fields)})"
        )
    return lines[fields.index(field) :: size]


def read_pepler_split(path: str | Path) -> list[str]:
    """Template sentences of a PEPLER fold's split, in index order (PEPLER's test order).

    `path` is an index file (`1/test.index`) or a fold folder (`1/`, meaning its test split);
    `reviews.pickle` is read from the folder above the fold.
    """
    from whyrec.data.pepler import INDEX_FILES, REVIEWS, _read_index, read_reviews
    from whyrec.data.schema import TEST

    path = Path(path)
    if path.is_dir():
        if (path / REVIEWS).is_file() and not (path / INDEX_FILES[TEST]).is_file():
            folds = sorted(p.name for p in path.iterdir() if p.is_dir() and p.name.isdigit())
            raise WhyrecError(
                f"{path} is a PEPLER dataset; pass one fold folder (its test split), e.g. "
                f"{path / (folds[0] if folds else '1')}, or an index file such as "
                f"{path / (folds[0] if folds else '1') / INDEX_FILES[TEST]}"
            )
        path = path / INDEX_FILES[TEST]
    if not path.is_file():
        raise WhyrecError(
            f"{path} not found; pass a PEPLER fold folder (with {INDEX_FILES[TEST]}) or an index file"
        )
    reviews = path.parent.parent / REVIEWS
    if not reviews.is_file():
        raise WhyrecError(
            f"{path}: no {REVIEWS} in {path.parent.parent}; a PEPLER index file lives in a fold "
            f"folder next to {REVIEWS}"
        )
    records = read_reviews(reviews)
    index = _read_index(path, len(records))
    return _check_strings([records[i]["template"][2] for i in index], path, "row")
