"""Item facts as an explicit prompt slot (issue 20): the slot text from metadata and training
features, and XRec's prompt with the slot on, and unchanged with it off (older folders)."""

import json
from types import SimpleNamespace

import pandas as pd

from whyrec.config import XRecConfig
from whyrec.data.item_facts import item_facts, top_features
from whyrec.methods.xrec.model import XRec


def test_facts_from_metadata_in_a_fixed_order_and_bounded():
    items = pd.DataFrame({
        "item": ["1", "2", "3"],
        "title": ["Fargo (1996)", "Alien (1979)", "Untitled"],
        "genre": [["Crime", "Thriller"], ["Sci-Fi", "Horror"], []],
        "director": [["Joel Coen"], ["Ridley Scott"], []],
        "cast": [["Frances McDormand", "William H. Macy", "Steve Buscemi", "Peter Stormare"], [], []],
        "year": [1996, pd.NA, None],
    })
    facts = item_facts(items)
    assert facts["1"] == ("genre: crime, thriller; year: 1996; director: Joel Coen; "
                          "cast: Frances McDormand, William H. Macy, Steve Buscemi")  # three cast members
    assert facts["2"] == "genre: sci-fi, horror; year: 1979; director: Ridley Scott"  # year from the title
    assert "3" not in facts  # nothing known: no slot text
    assert item_facts(items, max_words=7)["1"] == "genre: crime, thriller; year: 1996"  # whole parts only
    assert item_facts(items, max_words=8)["1"] == "genre: crime, thriller; year: 1996; director: Joel Coen"


def test_review_features_come_from_the_training_split_by_frequency():
    inter = pd.DataFrame({
        "user": list("abcdefg"), "item": ["9"] * 7,
        "feature": ["sound", "price", "sound", "strings", "price", "sound", "tuner"],
        "split": ["train"] * 5 + ["test", "test"],  # test records never reach the prompt
    })
    assert top_features(inter) == {"9": ["sound", "price", "strings"]}
    items = pd.DataFrame({"item": ["9"], "title": ["Guitar"]})
    assert item_facts(items, inter) == {"9": "features: sound, price, strings"}


class _Chat:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return json.dumps(messages)


def _prompt(cfg: XRecConfig, facts: str = "") -> dict:
    messages = json.loads(XRec.prompt(SimpleNamespace(cfg=cfg, tokenizer=_Chat()), "Fargo (1996)", "likes crime",
                                      "a crime film", facts))
    return messages[1]["content"]


def test_xrec_prompt_has_a_facts_slot_only_when_on():
    old = ("user record: <USER_EMBED> movie record: <ITEM_EMBED> movie name: Fargo (1996) "
           "user profile: likes crime movie profile: a crime film <EXPLAIN_POS>")
    off = XRecConfig(item_noun="movie", item_facts=False)
    assert _prompt(off) == old and _prompt(off, "genre: crime") == old  # as folders were trained
    on = XRecConfig(item_noun="movie", item_facts=True, max_prompt_words=4)
    assert _prompt(on, "genre: crime, thriller; year: 1996; director: Joel Coen") == (
        "user record: <USER_EMBED> movie record: <ITEM_EMBED> movie name: Fargo (1996) "
        "movie facts: genre: crime, thriller; year: "  # cut to max_prompt_words
        "user profile: likes crime movie profile: a crime film <EXPLAIN_POS>")
    assert "movie facts: unknown" in _prompt(on)


def test_a_config_saved_before_the_field_loads_with_the_slot_off():
    from dataclasses import asdict

    saved = {k: v for k, v in asdict(XRecConfig()).items() if k not in ("lora", "item_facts")}
    # The default is on for new runs, so load_explainer fills the missing field with False itself
    # (end to end: test_xrec_facts_wiring.test_a_folder_saved_before_the_field_prompts_without_facts).
    assert XRecConfig(**saved).item_facts is True
