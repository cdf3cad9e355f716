"""XRec's teacher pipeline (item/user profiles, explanations) against a fake chat server on 127.0.0.1."""

import json
import re

import pandas as pd
import pytest
from conftest import FakeChatEndpoint, chat_reply

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.llm.client import ChatCache, OpenAICompatibleClient
from whyrec.teacher_profiles import (
    MAX_WORDS,
    PromptLimits,
    clean_reply,
    load_templates,
    read_done,
    write_profiles,
)
from whyrec.utils import WhyrecError


def answer(prompt: str) -> str:
    """Deterministic teacher: names the stage and the ids/tokens the prompt mentions."""
    if "WHAT BUYERS SAID" in prompt:
        title = re.search(r"Title: (.*)", prompt).group(1)
        return json.dumps({"summarization": f"fans of {title}"})  # the JSON wrapper XRec asks for
    if "PRODUCTS THE USER BOUGHT" in prompt:
        return json.dumps({"summarization": "likes " + " ".join(re.findall(r"title: (\S+)", prompt))})
    review = prompt.split("REVIEW\n", 1)[1]
    if "LONG" in review:
        return " ".join(["word"] * 80)
    if "BLANK" in review:
        return "   "
    return "The user enjoys " + review.strip()


@pytest.fixture
def server():
    def respond(n: int, payload: dict) -> tuple[int, str]:
        if srv.fail_after is not None and len(srv.prompts) >= srv.fail_after:  # HTTP 400 is not retried
            return 400, json.dumps({"error": "stop"})
        return chat_reply(answer(payload["messages"][-1]["content"]))

    with FakeChatEndpoint(respond) as srv:
        srv.fail_after = None  # answer HTTP 400 once this many prompts were answered
        yield srv


def client_for(srv: FakeChatEndpoint) -> OpenAICompatibleClient:
    return OpenAICompatibleClient(srv.base_url, "teacher", api_key_env="", concurrency=1, max_retries=0)


def review_data() -> RecDataset:
    """3 users, 4 items; u3 has no train review (zero-shot); i4 has no train review and its id as title."""
    rows = [("u1", "i1", 5, "great tone", "train"), ("u1", "i2", 4, "LONG review", "train"),
            ("u2", "i1", 4, "solid build", "train"), ("u2", "i3", 3, "BLANK", "train"),
            ("u1", "i3", 5, "nice strings", "test"), ("u3", "i4", 4, "warm sound", "valid"),
            ("u2", "i2", 2, "", "train")]
    inter = pd.DataFrame(rows, columns=[S.USER, S.ITEM, S.RATING, S.REVIEW, S.SPLIT])
    items = pd.DataFrame({S.ITEM: ["i1", "i2", "i3", "i4"], S.TITLE: ["Capo", "Tuner", "Strings", "i4"],
                          S.DESCRIPTION: ["a capo", None, "steel strings", "a cable"]})
    return RecDataset(inter, items, None)


def test_clean_reply():
    assert clean_reply('{"summarization": "Guitarists who gig"}') == "Guitarists who gig"
    assert clean_reply('```json\n{"summarization": "x y"}\n```') == "x y"
    assert clean_reply('{"summarization": "cut off by max_tok') == "cut off by max_tok"
    assert clean_reply('"one\nline"') == "one line"
    assert len(clean_reply(" ".join(["w"] * 80)).split()) == MAX_WORDS
    assert clean_reply("") == ""


def test_three_stages_and_xrec_output(server, tmp_path):
    out = write_profiles(review_data(), tmp_path / "out", client_for(server), progress=False)
    assert out.item_text(S.PROFILE) == {"i1": "fans of Capo", "i2": "fans of Tuner", "i3": "fans of Strings",
                                        "i4": "fans of (no title given)"}  # not the id again
    profiles = out.user_text(S.PROFILE)
    assert profiles["u1"] == "likes Capo Tuner" and profiles["u2"] == "likes Capo Strings"
    assert profiles["u3"] == ""  # zero-shot user: nothing to summarise, never asked
    # Only TRAIN reviews reach profiles: the test review "nice strings" and valid "warm sound" do not.
    profile_prompts = [p for p in server.prompts if "REVIEW\n" not in p]
    assert not any("nice strings" in p or "warm sound" in p for p in profile_prompts)
    # The user prompt describes each item by its profile, as XRec does.
    assert "suits: fans of Capo" in next(p for p in server.prompts if "PRODUCTS THE USER BOUGHT" in p)
    exp = out.texts.set_index([S.USER, S.ITEM])[S.EXPLANATION]
    assert exp[("u1", "i1")] == "The user enjoys great tone"
    assert exp[("u1", "i3")] == "The user enjoys nice strings"
    assert len(exp[("u1", "i2")].split()) == MAX_WORDS
    assert ("u2", "i3") not in exp.index  # empty after one retry: recorded empty, left out of texts
    assert ("u2", "i2") not in exp.index  # no review text, no explanation
    meta = out.meta["teacher"]["stages"]
    assert meta["explanation"]["empty"] == 1 and meta["explanation"]["retried"] == 1
    assert meta["user_profile"]["skipped"] == {"no_train_reviews": 1}
    assert sum("REVIEW\nBLANK" in p for p in server.prompts) == 2  # asked, then retried once
    loaded = RecDataset.load(tmp_path / "out")
    assert len(loaded.explanation_records("train")) == 3  # u1-i1, u1-i2, u2-i1: what the XRec trainer reads
    assert set(loaded.explanation_records()[S.SPLIT]) == {"train", "test", "valid"}
    assert read_done(tmp_path / "out" / "explanations.jsonl")["u2\ti3"] == ""


def test_rerun_sends_nothing(server, tmp_path):
    write_profiles(review_data(), tmp_path / "out", client_for(server), progress=False)
    sent = len(server.prompts)
    again = write_profiles(review_data(), tmp_path / "out", client_for(server), progress=False)
    assert len(server.prompts) == sent
    assert again.meta["teacher"]["stages"]["item_profile"]["reused"] == 4
    assert all(s["written"] == 0 for s in again.meta["teacher"]["stages"].values())


def test_interrupted_run_resumes(server, tmp_path):
    write_profiles(review_data(), tmp_path / "ref", client_for(server), progress=False)
    total = len(server.prompts)
    server.prompts.clear()
    server.fail_after = 5  # 2 chunks of 2 are written, the 5th request fails
    with pytest.raises(WhyrecError, match="HTTP 400"):
        write_profiles(review_data(), tmp_path / "out", client_for(server), progress=False, chunk_size=2)
    assert len(read_done(tmp_path / "out" / "items.jsonl")) == 4
    server.prompts.clear()
    server.fail_after = None
    out = write_profiles(review_data(), tmp_path / "out", client_for(server), progress=False, chunk_size=2)
    assert len(server.prompts) == total - 4
    assert out.texts.equals(RecDataset.load(tmp_path / "ref").texts)


def test_caps_cache_and_template_override(server, tmp_path):
    templates = tmp_path / "prompts"
    templates.mkdir()
    (templates / "explanation.txt").write_text("REVIEW\n{review} (item: {title})")
    with ChatCache(tmp_path / "cache.sqlite") as cache:
        out = write_profiles(review_data(), tmp_path / "out", client_for(server), templates_dir=templates,
                             max_items=2, max_users=1, max_pairs=2, cache=cache, progress=False, seed=0)
        assert len(cache) == len(server.prompts)
    assert out.items[S.PROFILE].notna().sum() == 2 and out.users[S.PROFILE].notna().sum() <= 1
    assert len(out.texts) <= 2 and all("(item: " in t for t in out.texts[S.EXPLANATION])
    # The pairs' own items are profiled first.
    assert set(out.texts[S.ITEM]) <= set(out.items.dropna(subset=[S.PROFILE])[S.ITEM])
    assert load_templates()["item_profile"] != load_templates(templates)["explanation"]


def test_bad_template_and_missing_columns(server, tmp_path):
    templates = tmp_path / "prompts"
    templates.mkdir()
    (templates / "item_profile.txt").write_text("{nope}")
    with pytest.raises(WhyrecError, match="item_profile template"):
        write_profiles(review_data(), tmp_path / "o", client_for(server), templates_dir=templates, progress=False)
    ds = review_data()
    ds.interactions = ds.interactions.drop(columns=[S.SPLIT])
    with pytest.raises(WhyrecError, match="split"):
        write_profiles(ds, tmp_path / "o2", client_for(server), progress=False)


def test_local_tiny_model_runs(tmp_path):
    import torch

    from whyrec.config import ModelConfig
    from whyrec.llm.client import LocalHFClient

    torch.set_num_threads(1)
    client = LocalHFClient(ModelConfig("tiny-random-llama", device="cpu"), batch_size=4)
    # A byte-level tokenizer makes every character a token: short prompts keep this test fast.
    out = write_profiles(review_data(), tmp_path / "out", client, max_items=3, max_users=1, max_pairs=1,
                         max_tokens=4, progress=False, limits=PromptLimits(2, 2, 40, 40))
    assert out.meta["teacher"]["backend"] == "local"
    assert out.items[S.PROFILE].notna().sum() + out.meta["teacher"]["stages"]["item_profile"]["empty"] == 3
    assert all(len(str(t).split()) <= MAX_WORDS for t in out.items[S.PROFILE].dropna())


def test_cli_data_profiles(server, tmp_path):
    from whyrec.cli import main

    review_data().save(tmp_path / "reviews")
    out = tmp_path / "xrec-style"
    assert main(["data", "profiles", "--data", str(tmp_path / "reviews"), "--out", str(out),
                 "--teacher.backend", "openai", "--teacher.base_url", server.base_url, "--teacher.model", "teacher",
                 "--teacher.api_key_env", "", "--teacher.cache_path", str(tmp_path / "c.sqlite")]) == 0
    ds = RecDataset.load(out)
    assert len(ds.explanation_records("train")) > 0 and ds.items[S.PROFILE].str.len().gt(0).any()
    assert (out / "explanations.jsonl").exists()
