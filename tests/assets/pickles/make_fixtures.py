"""Write the benign fixture pickles that tests/reliability/test_hostile_pickles.py must load.

How they were made (one run per writer, each in its own throwaway venv; PyPI wheels):

    python3 -m venv /tmp/p2n1 && /tmp/p2n1/bin/pip install 'pandas==2.1.*' 'numpy<2'
    python3 -m venv /tmp/p2n2 && /tmp/p2n2/bin/pip install 'pandas==2.2.*' 'numpy>=2,<2.1'
    python3 -m venv /tmp/p3n1 && /tmp/p3n1/bin/pip install 'pandas==3.*' 'numpy<2'   # no pyarrow
    python3 -m venv /tmp/p3n2 && /tmp/p3n2/bin/pip install 'pandas==3.*' 'numpy>=2' pyarrow
    for v in p2n1 p2n2 p3n1 p3n2; do /tmp/$v/bin/python tests/assets/pickles/make_fixtures.py; done

Each run writes `pandas<version>-numpy<version>[-pyarrow]/` with XRec-shaped records (tst.pkl
as `df.to_pickle` writes it, protocol 5; the same frame at protocols 4 and 2; a zero-row
frame at protocol 2), predictions as a Series and as numpy arrays, and `globals.json`: the
(module, name) pairs each file names, read off its opcodes with pickletools.genops. The
union of those pairs is what `whyrec.data.safe_pickle.ALLOWED_GLOBALS` admits. `plain/`
holds builtin-only pickles (para_dict.pickle, tst_pred.pkl, PEPLER's reviews.pickle).
"""

import json
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent

RECORDS = {  # ids fit plain/para_dict.pickle (5 users, 5 items)
    "uid": [0, 1, 2, 3, 4], "iid": [1, 4, 3, 0, 2],
    "title": ["Drums of Autumn", "High Voltage (Fever)", "Dune", "Emma", None],
    "user_summary": ["Enjoys historical romance.", "Likes steamy series.", "Sci-fi fan.", "Classics.", "Mystery."],
    "item_summary": ["Outlander fans.", "Fever finale.", "Desert planet.", "Regency comedy.", "Whodunit."],
    "explanation": ["The user enjoyed every Gabaldon book.", "The user awaited Dani's story.",
                    "The user likes world-building.", "The user likes Austen's wit.", "The user likes puzzles."],
}


def names_in(data: bytes) -> list[tuple[str, str]]:
    """(module, name) of every GLOBAL/STACK_GLOBAL, following memoised strings."""
    found, pushed, memo = set(), [], {}
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            found.add(tuple(arg.split(" ", 1)))
        elif op.name == "STACK_GLOBAL":
            found.add((pushed[-2], pushed[-1]))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            pushed.append(arg)
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            pushed.append(memo.get(arg))
        elif op.name == "MEMOIZE" and pushed:
            memo[len(memo)] = pushed[-1]
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT") and pushed:
            memo[arg] = pushed[-1]
    return sorted(found)


def writer_files() -> dict[str, bytes]:
    frame = pd.DataFrame(RECORDS, index=pd.Index([13037, 41089, 37882, 75936, 88008]))  # a sampled index, like tst.pkl
    texts = RECORDS["explanation"]
    return {
        "tst.pkl": None,  # written by df.to_pickle below
        "tst_p4.pkl": pickle.dumps(frame.reset_index(drop=True), protocol=4),
        "tst_p2.pkl": pickle.dumps(frame, protocol=2),
        "empty_p2.pkl": pickle.dumps(frame.iloc[:0], protocol=2),
        "tst_pred_series.pkl": pickle.dumps(pd.Series(texts, name="prediction"), protocol=4),
        "tst_pred_object_array.pkl": pickle.dumps(np.array(texts, dtype=object), protocol=4),
        "tst_pred_unicode_array.pkl": pickle.dumps(np.array(texts), protocol=5),
    }, frame


def plain_files() -> dict[str, bytes]:
    para = {"trn_user_nb": [[1, 2], [4], [3, 0], [0], [2, 1]], "trn_item_nb": [[2, 3], [0, 4], [0, 4], [2], [1]],
            "tst_user_nb": [[3], [], [], [1], []], "tst_item_nb": [[], [], [], [0], [3]], "user_num": 5, "item_num": 5}
    reviews = [{"user": f"u{i % 3}", "item": f"i{i % 4}", "rating": float(1 + i % 5),
                "template": ("sound", "warm", f"the sound is warm {i}", 1), "text": f"review {i}"} for i in range(10)]
    return {"para_dict.pickle": pickle.dumps(para, protocol=4), "tst_pred.pkl": pickle.dumps(RECORDS["explanation"], protocol=4),
            "reviews.pickle": pickle.dumps(reviews, protocol=3)}  # PEPLER pins Python 3.6: protocol 3


def main() -> None:
    tag = f"pandas{pd.__version__}-numpy{np.__version__}"
    try:
        import pyarrow

        tag += f"-pyarrow{pyarrow.__version__}"
    except ImportError:
        pass
    out = HERE / tag
    out.mkdir(exist_ok=True)
    files, frame = writer_files()
    frame.to_pickle(out / "tst.pkl")
    files["tst.pkl"] = (out / "tst.pkl").read_bytes()
    for name, data in files.items():
        (out / name).write_bytes(data)
    needs = {n: [f"{module} {name}" for module, name in names_in(d)] for n, d in files.items()}
    (out / "globals.json").write_text(json.dumps(needs, indent=1) + "\n")
    (HERE / "plain").mkdir(exist_ok=True)
    for name, data in plain_files().items():
        (HERE / "plain" / name).write_bytes(data)
    print(out)


if __name__ == "__main__":
    main()
