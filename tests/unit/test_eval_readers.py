"""Reading predictions/references from every accepted format, and refusing bad files."""

import json
import os
import pickle
import re

import pandas as pd
import pytest

import whyrec
from whyrec.eval.readers import read_texts
from whyrec.eval.report import evaluate_files, metric_versions
from whyrec.eval.text import pepler_text_metrics
from whyrec.utils import WhyrecError

TEXTS = ["the room was clean.", "", "great location, friendly staff!"]


def raises(message):
    return pytest.raises(WhyrecError, match=re.escape(message))


# ---------------------------------------------------------------- every format


def test_txt_keeps_empty_lines_and_odd_line_breaks(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes("first\r\n\nthird has a \u2028 inside\n".encode())
    assert read_texts(path) == ["first", "", "third has a \u2028 inside"]
    (tmp_path / "q.txt").write_text("no final newline")
    assert read_texts(tmp_path / "q.txt") == ["no final newline"]


def test_jsonl_strings_objects_and_column(tmp_path):
    strings = tmp_path / "s.jsonl"
    strings.write_text("\n".join(json.dumps(t) for t in TEXTS) + "\n")
    assert read_texts(strings) == TEXTS

    single = tmp_path / "o.jsonl"  # the only string field is taken
    single.write_text(
        "\n".join(json.dumps({"uid": i, "explanation": t}) for i, t in enumerate(TEXTS))
    )
    assert read_texts(single) == TEXTS

    both = tmp_path / "b.jsonl"
    both.write_text("\n".join(json.dumps({"prediction": t, "reference": t.upper()}) for t in TEXTS))
    assert read_texts(both, column="reference") == [t.upper() for t in TEXTS]
    with raises(
        "cannot tell which column holds the text (columns: prediction, reference); pass --column"
    ):
        read_texts(both)


def test_json_list_and_dict_of_lists(tmp_path):
    listing = tmp_path / "l.json"
    listing.write_text(json.dumps(TEXTS))
    assert read_texts(listing) == TEXTS
    table = tmp_path / "d.json"
    table.write_text(json.dumps({"prediction": TEXTS, "reference": ["x"] * 3}))
    assert read_texts(table, column="prediction") == TEXTS


def test_csv_and_tsv(tmp_path):
    pd.DataFrame({"text": TEXTS + ["NA"]}).to_csv(tmp_path / "one.csv", index=False)
    # The only column; an empty cell and the word "NA" stay text.
    assert read_texts(tmp_path / "one.csv") == TEXTS + ["NA"]
    frame = pd.DataFrame({"user": ["u1", "u2", "u3"], "prediction": TEXTS, "score": [1, 2, 3]})
    frame.to_csv(tmp_path / "many.tsv", sep="\t", index=False)
    assert read_texts(tmp_path / "many.tsv") == TEXTS  # the one preferred name
    assert read_texts(tmp_path / "many.tsv", column="user") == ["u1", "u2", "u3"]
    with raises("has no column 'pred'; columns: user, prediction, score"):
        read_texts(tmp_path / "many.tsv", column="pred")


def test_parquet(tmp_path):
    pd.DataFrame({"user": [1, 2, 3], "explanation": TEXTS}).to_parquet(tmp_path / "p.parquet")
    assert read_texts(tmp_path / "p.parquet") == TEXTS  # the only text column
    pd.DataFrame({"explanation": ["a", None, "c"]}).to_parquet(tmp_path / "none.parquet")
    with raises("none.parquet row 1 is missing"):
        read_texts(tmp_path / "none.parquet")


def test_pickled_list(tmp_path):
    pd.to_pickle(TEXTS, tmp_path / "l.pkl")
    assert read_texts(tmp_path / "l.pkl") == TEXTS
    pd.to_pickle({"a": 1}, tmp_path / "dict.pkl")
    with raises("holds a dict; expected a list of strings, a pandas Series or a DataFrame"):
        read_texts(tmp_path / "dict.pkl")


def test_pickled_series_and_dataframe(tmp_path):
    pd.to_pickle(pd.Series(TEXTS), tmp_path / "s.pickle")
    pd.to_pickle(pd.DataFrame({"a": TEXTS, "b": TEXTS[::-1]}), tmp_path / "d.pkl")
    assert read_texts(tmp_path / "s.pickle") == TEXTS
    assert read_texts(tmp_path / "d.pkl", column="b") == TEXTS[::-1]
    with raises("cannot tell which column holds the text (columns: a, b); pass --column"):
        read_texts(tmp_path / "d.pkl")


# ---------------------------------------------------------------- malformed input


def test_missing_file_and_unknown_extension(tmp_path):
    with raises("not found"):
        read_texts(tmp_path / "nope.txt")
    (tmp_path / "p.docx").write_text("x")
    with raises("unknown extension '.docx'; accepted: .txt, .jsonl, .json, .csv, .tsv, .parquet"):
        read_texts(tmp_path / "p.docx")
    with raises(".pickle, .index or a PEPLER fold folder"):
        read_texts(tmp_path / "p.docx")


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with raises("is not a readable Parquet file"):
        read_texts(path)


def test_truncated_pickle(tmp_path):
    data = pickle.dumps(TEXTS * 10)
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with raises("truncated"):
        read_texts(tmp_path / "cut.pkl")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_a_disallowed_class_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([_Exploit(marker)]))
    with pytest.raises(WhyrecError, match=r"refusing to unpickle \w+\.system"):
        read_texts(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_non_string_entries_name_the_row(tmp_path):
    (tmp_path / "n.jsonl").write_text('"a"\n"b"\n7\n')
    with raises("n.jsonl line 3 is int (7), not text"):
        read_texts(tmp_path / "n.jsonl")
    (tmp_path / "bad.jsonl").write_text('"a"\n{oops\n')
    with raises("bad.jsonl line 2 is not valid JSON"):
        read_texts(tmp_path / "bad.jsonl")
    (tmp_path / "gap.jsonl").write_text('"a"\n\n"b"\n')
    with raises("gap.jsonl line 2 is blank"):
        read_texts(tmp_path / "gap.jsonl")
    (tmp_path / "missing.jsonl").write_text('{"text": "a"}\n{"other": "b"}\n')
    with raises("missing.jsonl line 2 has no 'text' field"):
        read_texts(tmp_path / "missing.jsonl")


def test_binary_text_file_is_refused(tmp_path):
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00binary")
    with raises("is not UTF-8 text"):
        read_texts(tmp_path / "bin.txt")


# ---------------------------------------------------------------- evaluate_files


def test_evaluate_files_writes_metrics_and_report(tmp_path):
    (tmp_path / "pred.txt").write_text("the room was clean .\ngreat staff\n")
    pd.DataFrame({"explanation": ["the room was clean.", "friendly staff"]}).to_parquet(
        tmp_path / "ref.parquet"
    )
    metrics = evaluate_files(tmp_path / "pred.txt", tmp_path / "ref.parquet", tmp_path / "out")
    assert set(metrics) == {"pepler", "standard", "n", "metric_versions"} and metrics["n"] == 2
    # .whyrec.json: the output-folder marker (what made the folder, so a rerun never mixes outputs)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".whyrec.json", "metrics.json", "report.md"]
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["pepler"]["bleu1"] == pytest.approx(metrics["pepler"]["bleu1"])
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## PEPLER definitions" in text and "## Standard definitions" in text
    assert "without smoothing" in text and "beta = P/R" in text
    assert "| BLEU-4 |" in text and "| USR (unique sentences / N) | 1.0000 |" in text


def test_evaluate_files_smoothing_is_stated(tmp_path):
    (tmp_path / "p.txt").write_text("a b c\n")
    (tmp_path / "r.txt").write_text("a b d\n")
    metrics = evaluate_files(tmp_path / "p.txt", tmp_path / "r.txt", tmp_path / "out", smooth=True)
    assert metrics["pepler"]["bleu4"] > 0  # unsmoothed BLEU-4 would be 0 here
    assert "add-one smoothing" in (tmp_path / "out" / "report.md").read_text()


def test_evaluate_files_refuses_unpaired_files(tmp_path):
    (tmp_path / "p.txt").write_text("a\nb\nc\n")
    (tmp_path / "r.txt").write_text("a\nb\n")
    with raises("predictions has 3 rows but references has 2; they must be paired line by line"):
        evaluate_files(tmp_path / "p.txt", tmp_path / "r.txt", tmp_path / "out")
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_same_plain_file_as_both_sides_is_refused(tmp_path):
    (tmp_path / "p.txt").write_text("a\nb\n")
    with raises("p.txt is given as both predictions and references"):
        evaluate_files(tmp_path / "p.txt", tmp_path / "p.txt", tmp_path / "out")


# ---------------------------------------------------------------- metric versions


def test_metrics_json_records_versions_and_definitions(tmp_path):
    from importlib.metadata import version

    (tmp_path / "p.txt").write_text("the room was clean .\n")
    (tmp_path / "r.txt").write_text("the room is clean .\n")
    evaluate_files(tmp_path / "p.txt", tmp_path / "r.txt", tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    info = saved["metric_versions"]
    assert info["whyrec"] == whyrec.__version__
    tags = info["definitions"]["pepler"]
    assert tags["bleu1"] == tags["bleu4"] == "pepler-bleu"
    assert tags["rouge1_f"] == "pepler-rouge-n-sets" and tags["rougeL_f"] == "pepler-rouge-l"
    assert tags["usr_raw"] == "xrec-usr-raw-split"
    assert set(tags) == set(saved["pepler"])  # every number has its definition
    if "skipped" not in saved["standard"]:
        assert info["sacrebleu"] == version("sacrebleu")
        assert info["rouge-score"] == version("rouge-score")
        assert info["sacrebleu_signature"].endswith(
            f"tok:13a|smooth:exp|version:{version('sacrebleu')}"
        )
        assert set(info["definitions"]["standard"]) == set(saved["standard"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"Computed with whyrec {whyrec.__version__}" in report


def test_metric_versions_tags_smoothing_bertscore_and_judge():
    metrics = {
        "pepler": {},
        "standard": {"skipped": "pip install 'whyrec[eval]'"},
        "n": 1,
        "bertscore": {
            "bertscore_p": 0.5,
            "bertscore_p_std": 0.1,
            "bertscore_f1": 0.5,
            "model": "roberta-large",
            "num_layers": 17,
            "idf": False,
            "rescaled": True,
            "note": "rescaled with roberta-large.tsv",
        },
        "gptscore": {"gptscore_mean": 80.0},
    }
    info = metric_versions(metrics, smooth=True)
    assert info["definitions"]["pepler"]["bleu4"] == "pepler-bleu-add-one-smoothed"
    assert "sacrebleu" not in info and "standard" not in info["definitions"]  # not computed
    assert info["bertscore"] | {"transformers": None} == {
        "model": "roberta-large",
        "num_layers": 17,
        "idf": False,
        "rescaled": True,
        "note": "rescaled with roberta-large.tsv",
        "transformers": None,
    }
    assert info["definitions"]["bertscore"] == {
        k: "bertscore-rescaled" for k in ("bertscore_p", "bertscore_p_std", "bertscore_f1")
    }
    assert info["definitions"]["gptscore"] == "xrec-gptscore-0-100"


# ---------------------------------------------------------------- XRec and PEPLER files


def test_xrec_pickle_pair_matches_methods_numbers(shared_data):
    """METHODS.md §3.8: XRec's shipped amazon predictions, read from the pickles as shipped."""
    folder = shared_data / "xrec-amazon"
    if not (folder / "tst_pred.pkl").is_file() or not (folder / "tst_ref.pkl").is_file():
        pytest.skip(f"{folder} lacks XRec's tst_pred.pkl / tst_ref.pkl")
    preds, refs = read_texts(folder / "tst_pred.pkl"), read_texts(folder / "tst_ref.pkl")
    assert len(preds) == len(refs) == 3000
    metrics = pepler_text_metrics(preds, refs)
    computed = {
        "bleu1": 41.23,
        "bleu4": 15.90,
        "rouge1_f": 41.66,
        "rouge2_f": 19.01,
        "rougeL_f": 33.53,
    }
    for key, value in computed.items():
        assert metrics[key] == pytest.approx(value, abs=0.005), key  # the table rounds to 2 places
    assert metrics["usr"] == 1.0


# PEPLER's main.py writes "{reference}\n{prediction}\n\n" per test record; PETER adds its
# context words between the two.
PEPLER_GENERATED = "the room was clean\nthe room is clean\n\ngreat staff\n\n\nnice pool\na pool\n\n"
PETER_GENERATED = (
    "the room was clean\nroom clean the\nthe room is clean\n\nnice pool\npool\na pool\n\n"
)


def test_pepler_generated_txt_gives_either_side(tmp_path):
    path = tmp_path / "generated.txt"
    path.write_text(PEPLER_GENERATED)
    assert read_texts(path, role="reference") == ["the room was clean", "great staff", "nice pool"]
    # An empty generation (the second record) stays an empty prediction.
    assert read_texts(path, role="prediction") == ["the room is clean", "", "a pool"]
    assert read_texts(path, column="reference", role="prediction")[0] == "the room was clean"
    # A --column meant for the other file is not a field here and leaves the role in charge.
    assert read_texts(path, column="explanation", role="prediction")[2] == "a pool"
    with raises("generated.txt holds reference and prediction lines; say which to read"):
        read_texts(path)


def test_peter_layout_crlf_and_missing_final_blank_line(tmp_path):
    peter = tmp_path / "generated_peter.txt"
    peter.write_text(PETER_GENERATED)
    assert read_texts(peter, role="prediction") == ["the room is clean", "a pool"]
    assert read_texts(peter, column="context") == ["room clean the", "pool"]
    trimmed = tmp_path / "generated_trimmed.txt"  # saved by an editor: CRLF, last blank dropped
    trimmed.write_bytes(PEPLER_GENERATED.rstrip("\n").replace("\n", "\r\n").encode())
    assert read_texts(trimmed, role="prediction") == ["the room is clean", "", "a pool"]
    one = tmp_path / "generated_one.txt"  # 3 lines would also fit a PETER block padded by one
    one.write_text("ref words\npred words\n\n")
    assert read_texts(one, role="prediction") == ["pred words"]


def test_generated_txt_that_is_not_pepler_layout_is_refused(tmp_path):
    path = tmp_path / "generated.txt"
    path.write_text("one text per line\nanother\nand a third\nfourth\nfifth\n")
    with raises("is named like PEPLER's generated.txt but is not laid out as blocks"):
        read_texts(path, role="prediction")


def test_evaluate_files_takes_one_generated_txt_for_both_sides(tmp_path):
    path = tmp_path / "generated.txt"
    path.write_text(PEPLER_GENERATED)
    metrics = evaluate_files(path, path, tmp_path / "out")
    expected = pepler_text_metrics(
        ["the room is clean", "", "a pool"], ["the room was clean", "great staff", "nice pool"]
    )
    assert metrics["n"] == 3 and metrics["pepler"] == pytest.approx(expected)


def _pepler_folder(root):
    """A PEPLER dataset: reviews.pickle (builtin types only) and fold 1 with its index files."""
    sentences = ["the room was clean", "great staff", "nice pool", "noisy street"]
    records = [
        {"user": f"u{i}", "item": f"i{i}", "rating": 4.0, "template": ("room", "clean", s, 1)}
        for i, s in enumerate(sentences)
    ]
    (root / "1").mkdir(parents=True)
    (root / "reviews.pickle").write_bytes(pickle.dumps(records, protocol=4))
    for name, index in (("train", "1"), ("validation", "0"), ("test", "3 2")):
        (root / "1" / f"{name}.index").write_text(index)
    return root


def test_pepler_fold_folder_and_index_file_as_references(tmp_path):
    root = _pepler_folder(tmp_path / "TripAdvisor")
    # Index order, not record order: PEPLER generates in the order test.index lists.
    assert read_texts(root / "1") == ["noisy street", "nice pool"]
    assert read_texts(root / "1" / "test.index") == ["noisy street", "nice pool"]
    assert read_texts(root / "1" / "validation.index") == ["the room was clean"]
    with raises("is a PEPLER dataset; pass one fold folder (its test split)"):
        read_texts(root)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "test.index").write_text("0")
    with raises(f"no reviews.pickle in {tmp_path}"):
        read_texts(tmp_path / "elsewhere" / "test.index")
    (root / "1" / "test.index").write_text("3 9")
    with raises("index 9 is out of range for 4 records"):
        read_texts(root / "1")


def test_evaluate_generated_txt_against_the_pepler_fold(tmp_path):
    root = _pepler_folder(tmp_path / "data")
    (tmp_path / "generated.txt").write_text("noisy street\nnoisy road\n\nnice pool\nnice pool\n\n")
    metrics = evaluate_files(tmp_path / "generated.txt", root / "1", tmp_path / "out")
    assert metrics["n"] == 2
    assert metrics["pepler"] == pytest.approx(
        pepler_text_metrics(["noisy road", "nice pool"], ["noisy street", "nice pool"])
    )


def test_cli_evaluates_pepler_generated_txt_alone(tmp_path):
    import json

    from whyrec.cli import main

    path = tmp_path / "generated.txt"
    path.write_text(PEPLER_GENERATED)
    assert main(["evaluate", "--predictions", str(path), "--out", str(tmp_path / "m")]) == 0
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["n"] == 3
    assert metrics["metric_versions"]["whyrec"]
