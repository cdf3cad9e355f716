"""RecAlpaca instruction data: Alpaca template, response-only masking, candidates, teacher, leakage."""

import ast
import json
import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import FakeChatEndpoint, chat_reply, require_distribution

from whyrec.config import LightGCNConfig
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.llm.client import OpenAICompatibleClient
from whyrec.methods.recalpaca.alpaca import IGNORE_INDEX, render_prompt, tokenize_example
from whyrec.methods.recalpaca.instructions.build import build_instructions
from whyrec.methods.recalpaca.instructions.outputs import check_teacher_answer
from whyrec.methods.recalpaca.instructions.prompts import add_distinct, profile_text, render_input
from whyrec.methods.recalpaca.instructions.testusers import (
    TestMatch,
    banned_items,
    match_test_users,
    parse_profile,
)
from whyrec.methods.recalpaca.instructions.titles import (
    parse_choices,
    same_key,
    same_title,
    title_key,
    title_list,
)

# ---------------------------------------------------------------- template and masking


def test_render_prompt_exact_strings():
    assert render_prompt("Pick {one}.", "A, B") == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nPick {one}.\n\n### Input:\nA, B\n\n### Response:\n")
    assert render_prompt("Say hi.", "  ") == render_prompt("Say hi.") == (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nSay hi.\n\n### Response:\n")


def test_labels_mask_exactly_the_prompt():
    from whyrec.llm.load import tiny_tokenizer

    tok = tiny_tokenizer()
    record = {"instruction": "Pick.", "input": "A or B", "output": "1. A: fun"}
    n_prompt = len(tok(render_prompt("Pick.", "A or B"))["input_ids"])
    n_response = len(tok("1. A: fun", add_special_tokens=False)["input_ids"])
    row = tokenize_example(tok, record, cutoff_len=1024)
    assert len(row["input_ids"]) == len(row["labels"]) == n_prompt + n_response + 1
    assert row["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert row["labels"][n_prompt:] == row["input_ids"][n_prompt:]
    assert row["input_ids"][-1] == tok.eos_token_id
    assert tok.decode(row["input_ids"][n_prompt:-1]) == "1. A: fun"
    cut = tokenize_example(tok, record, cutoff_len=n_prompt + 3)
    assert cut["input_ids"] == row["input_ids"][:n_prompt + 3] and cut["labels"] == row["labels"][:n_prompt + 3]


def test_profile_text_round_trips():
    for demo in [(23, "F", "student"), (73, "M", "retired"), (30, "M", "other"), (44, "F", "writer")]:
        assert parse_profile(f"\nuser profile: {profile_text(*demo)} \n") == demo
    assert profile_text(23, "F", "student") == "She is 23 old, and She is a student"


def test_input_layout_reproduces_the_shared_test_file(shared_data):
    rows = json.loads((shared_data / "recalpaca-ml100k/ML100kEvaluationRecAlpaca.json").read_text())
    row = rows[0]
    text = row["wTop1Input"]  # `input` has broken quoting; wTop1Input is the same layout, parseable
    profile = re.search(r"user profile: (.*?) \n", text).group(1)
    cands = re.search(r"likely to like: (\[.*?\])\. ", text).group(1)
    ours = render_input(profile, title_list(text, "score 5 out 5:"), title_list(text, "socre 2 out 5:"),
                        title_list(text + "\n", "socre 1 out 5:"), eval(cands), row["top1"])  # noqa: S307
    # The file quotes the top-1 in `input` ('Fargo') but not in wTop1Input; we always quote it.
    assert ours == text.replace(f"is {row['top1']}. Please", f"is '{row['top1']}'. Please")


# ---------------------------------------------------------------- parsing and filters


def test_parse_choices_and_outside_filter():
    cands = ["Fargo", "2001: A Space Odyssey", "The Full Monty", "Monty Python and the Holy Grail", "Heat"]
    text = ('Here you go:\n1. "Fargo" (1996): dark.\n2. **2001: A Space Odyssey**: space.\n'
            "3. Full Monty, The - fun\n4. Heat: cops.\n5. Monty Python and the Holy Grail: silly.")
    assert parse_choices(text, cands) == ([0, 1, 2, 4, 3], [])
    chosen, outside = parse_choices(text + "\n6. Casablanca: classic.", cands)
    assert outside == ["Casablanca"]
    ex = {"candidates": cands, "candidate_items": list("abcde")}
    assert check_teacher_answer(ex, text + "\n6. Casablanca: classic.", 5) == "outside_candidates"
    assert check_teacher_answer(ex, "1. Fargo: x\n2. Heat: y", 5) == "too_few_choices"
    assert check_teacher_answer({**ex, "_banned_titles": ["Shallow Grave"]},
                          text.replace("dark.", "like Shallow Grave."), 5) == "names_test_item"
    kept = check_teacher_answer(ex, text, 5)
    assert kept["chosen_items"] == ["a", "b", "c", "e", "d"] and kept["source"] == "teacher"


def test_titles_match_tolerantly():
    assert same_title("A Clockwork Orang", "Clockwork Orange, A (1971)")
    assert same_title("Boot, Das", "Das Boot (1981)")
    assert not same_title("Seven", "Seven Years in Tibet (1997)")


def test_banned_items_equal_a_pass_over_every_title():
    """The indexed lookup bans exactly the items `same_title` ties to a user's testGT titles: exact
    keys, cuts of up to 4 letters either way, and no fuzzy match for keys under 5 letters."""
    titles = ["Clockwork Orange, A (1971)", "Das Boot (1981)", "Seven (1995)", "Seven Years in Tibet (1997)",
              "Sevens (2001)", "Heat (1995)", "Heater (2003)", "Alien (1979)", "Aliens (1986)", "Alien 3 (1992)",
              "Star Wars (1977)", "Star Wars (1997)", "Casablanca (1942)", "Casablancas (1950)", "Up (2009)",
              "Terminator (1984)", "Gattaca (1997)"]
    items = pd.DataFrame({S.ITEM: [f"i{k}" for k in range(len(titles))], S.TITLE: titles})
    inter = pd.DataFrame({S.USER: ["u"] * len(titles), S.ITEM: items[S.ITEM], S.RATING: 5.0})
    ds = RecDataset(inter, items, pd.DataFrame({S.USER: ["u"]}))
    gts = {"a": ["A Clockwork Orang", "Seven"], "b": ["Alien", "Heat"], "c": ["Star War", "Casablancass", "Up"],
           "d": ["Nothing Like It"], "e": ["Termin", "Gattaca 123"], "f": ["Termi", "Gattaca 1234"]}
    out = banned_items(ds, TestMatch(excluded=gts))
    for user, gt in gts.items():
        brute = {i for i, t in zip(items[S.ITEM], titles) if any(same_key(title_key(t), title_key(g)) for g in gt)}
        assert out[user] == brute, user
    assert out["a"] == {"i0", "i2", "i4"} and out["b"] == {"i5", "i7", "i8", "i9"} and out["d"] == out["f"] == set()
    assert out["e"] == {"i15", "i16"}  # cut by exactly 4 letters, either way


def test_near_identical_instructions_are_dropped():
    seed = ["Recommend movies to this user using their personal information and rating history."]
    pool = add_distinct(seed, ["Recommend movies to this user using their personal information and rating history!",
                               "Pick the films this viewer would enjoy most and explain each pick."])
    assert pool == [seed[0], "Pick the films this viewer would enjoy most and explain each pick."]


# ---------------------------------------------------------------- a tiny world with a hand-built encoder

GENRES = ["Drama", "Comedy", "Horror"]


@pytest.fixture
def tiny(tmp_path):
    """8 users, 40 movies (director d{k%5}, genre by k%3), ratings by a fixed RNG, and a random
    LightGCN artifact whose training graph is each user's first 70% of ratings."""
    from whyrec.encoders.artifact import save_lightgcn
    from whyrec.encoders.lightgcn import LightGCN

    rng = np.random.default_rng(0)
    items = pd.DataFrame({S.ITEM: [str(k) for k in range(40)], S.TITLE: [f"Movie {k} (19{50 + k})" for k in range(40)],
                          "genre": [[GENRES[k % 3]] for k in range(40)], "director": [[f"d{k % 5}"] for k in range(40)],
                          "cast": [[] for _ in range(40)], "year": [1950 + k for k in range(40)]})
    rows = [(str(u), str(i), float(rng.integers(1, 6)), k) for u in range(8)
            for k, i in enumerate(rng.choice(40, 18, replace=False))]
    inter = pd.DataFrame(rows, columns=[S.USER, S.ITEM, S.RATING, S.TIMESTAMP])
    users = pd.DataFrame({S.USER: [str(u) for u in range(8)], "age": 30, "gender": "F", "occupation": "writer"})
    ds = RecDataset(inter, items, users)
    train = inter[inter[S.TIMESTAMP] < 13]
    csr = sp.csr_matrix((np.ones(len(train)), (train[S.USER].map(ds.user2idx), train[S.ITEM].map(ds.item2idx))),
                        shape=(ds.n_users, ds.n_items))
    model = LightGCN(LightGCNConfig(dim=8, n_layers=1), ds.n_users, ds.n_items, csr)
    save_lightgcn(model, tmp_path / "enc", ds.user2idx, ds.item2idx, csr)
    return ds, str(tmp_path / "enc")


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_grounded_reasons_cite_only_true_facts(tiny, tmp_path):
    ds, enc = tiny
    out = build_instructions(str(tmp_path / "g"), encoder=enc, exclude_test=None, n_candidates=10,
                             progress=False, data=ds)
    records = _records(out)
    assert records, "some user has a held-out liked movie among the candidates"
    rating = {(u, i): r for u, i, r in ds.interactions[[S.USER, S.ITEM, S.RATING]].itertuples(index=False)}
    history = {(u, i) for u, i, t in ds.interactions[[S.USER, S.ITEM, S.TIMESTAMP]].itertuples(index=False) if t < 13}
    meta = ds.items.set_index(S.ITEM)
    for rec in records:
        user = rec["user"]
        assert rec["chosen"][0] == rec["top1"] and len(rec["chosen"]) == 5
        assert set(rec["chosen_items"]) <= set(rec["candidate_items"])
        assert all((user, i) not in history for i in rec["candidate_items"])  # history is masked
        assert all(rating[(user, i)] >= 4 for i in rec["target_items"])
        assert parse_choices(rec["output"], rec["candidates"]) == (
            [rec["candidates"].index(t) for t in rec["chosen"]], [])
        for why in rec["reasons"]:
            for ev in why["evidence"]:  # cited movies are liked history movies
                assert (user, ev) in history and rating[(user, ev)] >= 4
            if why["kind"] == "director":
                assert all(why["shared"][0] in meta.at[j, "director"] for j in [why["item"], *why["evidence"]])
            if why["kind"] == "genre":
                for j in [why["item"], *why["evidence"]]:
                    assert set(why["shared"]) <= {g.lower() for g in meta.at[j, "genre"]}


class FakeTeacher:
    """Chat-client interface: lists the top-1 and 4 candidates, but names an outside movie for
    user 3's prompt; paraphrase requests get two rewordings, one a near copy."""

    backend_id, model = "fake", "fake-teacher"

    def __init__(self):
        self.prompts = []

    def cache_params(self, max_tokens=None):
        return {"max_tokens": max_tokens}

    def iter_complete(self, batch, max_tokens=None):
        for k, messages in enumerate(batch):
            prompt = messages[-1]["content"]
            self.prompts.append(prompt)
            if "Write one new instruction" in prompt:
                yield k, ["Choose the films this viewer would like most and justify each choice.",
                          "Choose the films this viewer would like most and justify each choice!"][k % 2]
                continue
            cands = eval(re.search(r"likely to like: (\[.*?\])\. ", prompt).group(1))  # noqa: S307
            top1 = re.search(r"selected is '(.*?)'", prompt).group(1)
            picks = [top1] + [c for c in cands if c != top1][:4]
            if "work as writer" in prompt and "USER3" in prompt:
                picks[-1] = "Casablanca"
            yield k, "\n".join(f"{n}. {t}: a reason." for n, t in enumerate(picks, 1))


def test_teacher_path_filters_and_resumes(tiny, tmp_path):
    ds, enc = tiny
    ds.items.loc[ds.items[S.ITEM] == "0", S.TITLE] = "USER3 marker (1950)"
    teacher = FakeTeacher()
    out = tmp_path / "t"
    path = build_instructions(str(out), encoder=enc, teacher=teacher, exclude_test=None, n_candidates=10,
                              max_users=4, progress=False, data=ds, n_paraphrases=2)
    first = _records(path)
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert len(first) + len(skipped) == 4
    pool = json.loads((out / "instruction_pool.json").read_text())["instructions"]
    assert pool[-1] == "Choose the films this viewer would like most and justify each choice."
    assert sum("justify each choice" in p for p in pool) == 1  # the near copy was dropped
    for rec in first:
        assert rec["source"] == "teacher" and rec["instruction"] in pool
        assert set(rec["chosen"]) <= set(rec["candidates"]) and "Casablanca" not in rec["output"]
    asked = len(teacher.prompts)
    # Second call, all users: the 4 done users are not asked again; third call asks nothing.
    build_instructions(str(out), encoder=enc, teacher=teacher, exclude_test=None, n_candidates=10,
                       progress=False, data=ds)
    assert len(teacher.prompts) - asked == 4
    assert _records(path)[:len(first)] == first
    users = [r["id"] for r in _records(path)] + [json.loads(x)["id"] for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert sorted(users) == sorted(ds.users[S.USER]) and len(set(users)) == 8
    asked = len(teacher.prompts)
    build_instructions(str(out), encoder=enc, teacher=teacher, exclude_test=None, n_candidates=10,
                       progress=False, data=ds)
    assert len(teacher.prompts) == asked
    assert json.loads((out / "run.json").read_text())["counts"]["reused"] == 8


def test_outside_candidate_answers_are_dropped(tiny, tmp_path):
    ds, enc = tiny
    teacher = FakeTeacher()
    teacher.iter_complete = lambda batch, max_tokens=None: (
        (k, "1. Casablanca: old.\n2. Heat: loud.") for k in range(len(batch)))
    out = tmp_path / "o"
    build_instructions(str(out), encoder=enc, teacher=teacher, exclude_test=None, n_candidates=10,
                       progress=False, data=ds, n_paraphrases=0)
    assert (out / "instructions.jsonl").read_text() == ""
    reasons = {json.loads(x)["reason"] for x in (out / "skipped.jsonl").read_text().splitlines()}
    assert reasons == {"outside_candidates"}


def recalpaca_answer(n: int, payload: dict) -> tuple[int, str]:
    """Answer a RecAlpaca prompt with the top-1 and the next 4 listed candidates, one reason each;
    the first answer ends with an outside movie instead."""
    prompt = payload["messages"][-1]["content"]
    cands = ast.literal_eval(re.search(r"likely to like: (\[.*?\])\. ", prompt).group(1))
    top1 = re.search(r"selected is '(.*?)'", prompt).group(1)
    picks = [top1] + [c for c in cands if c != top1][:4]
    if n == 1:
        picks[-1] = "Casablanca"
    return chat_reply("\n".join(f"{k}. {t}: it shares a genre with movies she rated highly."
                                 for k, t in enumerate(picks, 1)))


@pytest.fixture
def chat_server():
    with FakeChatEndpoint(recalpaca_answer) as srv:
        yield srv


def test_teacher_over_http_keeps_only_candidate_answers(tiny, chat_server, tmp_path):
    ds, enc = tiny
    # concurrency=1: requests arrive in user order, so exactly the first user's answer names Casablanca
    teacher = OpenAICompatibleClient(chat_server.base_url, "teacher", api_key_env="", concurrency=1, max_retries=0)
    out = tmp_path / "http"
    path = build_instructions(str(out), encoder=enc, teacher=teacher, exclude_test=None, n_candidates=10,
                              progress=False, data=ds, n_paraphrases=0)
    assert len(chat_server.prompts) == 8 and all("numbered list" in p for p in chat_server.prompts)
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert skipped == [{"id": "0", "reason": "outside_candidates"}]
    records = _records(path)
    assert sorted(r["id"] for r in records) == [str(u) for u in range(1, 8)]
    for rec in records:
        assert rec["source"] == "teacher" and rec["chosen"][0] == rec["top1"] and len(rec["chosen"]) == 5
        assert set(rec["chosen"]) <= set(rec["candidates"]) and "Casablanca" not in rec["output"]
        assert [rec["candidates"][i] for i in parse_choices(rec["output"], rec["candidates"])[0]] == rec["chosen"]
        assert rec["chosen_items"] == [rec["candidate_items"][rec["candidates"].index(t)] for t in rec["chosen"]]


# ---------------------------------------------------------------- no leakage on the real data


def test_no_test_item_reaches_test_users(shared_data, tmp_path):
    require_distribution("recbole", "recbole/dataset_example/ml-100k/ml-100k.inter")
    from whyrec.data.movielens import load_ml100k
    from whyrec.encoders.artifact import load_encoder

    test_file = shared_data / "recalpaca-ml100k/ML100kEvaluationRecAlpaca.json"
    ds = load_ml100k(metadata=False)
    match = match_test_users(test_file, ds)
    assert match.rows[0]["user"] == "49"  # 23, F, student; its liked list is user 49's 4-5 star titles
    assert len(match.rows) == 200 and min(r["overlap"] for r in match.rows) > 0.8
    users = sorted(match.excluded)[:6]
    out = tmp_path / "leak"
    path = build_instructions(str(out), exclude_test=str(test_file), progress=False, data=ds, users=users,
                              encoder_config=LightGCNConfig(dim=8, n_layers=1, epochs=1, eval_every=1))
    records = _records(path)
    skipped = (out / "skipped.jsonl").read_text().splitlines()
    assert len(records) + len(skipped) == len(users)
    titles = dict(zip(ds.items[S.ITEM], ds.items[S.TITLE]))
    enc = load_encoder(out / "encoder")
    for user in users:
        gt = match.excluded[user]
        row = enc.train_csr[enc.user2idx[user]].indices
        trained = {i for i, k in enc.item2idx.items() if k in set(row.tolist())}
        assert not any(same_title(titles[i], g) for i in trained for g in gt)  # not in the encoder graph
    for rec in records:
        gt = match.excluded[rec["user"]]
        named = rec["candidates"] + rec["targets"] + rec["chosen"] + title_list(rec["input"], "score 5 out 5:")
        named += title_list(rec["input"], "socre 2 out 5:") + title_list(rec["input"] + "\n", "socre 1 out 5:")
        assert not [t for t in named for g in gt if same_title(t, g)]
        assert not any(f" {g.lower()} " in f" {rec['output'].lower()} " for g in gt if len(g) > 6)
