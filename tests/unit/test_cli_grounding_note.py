"""`whyrec explain` / `recommend --explain` mark an explanation whose grounding choice
(`--generation.candidates` > 1, Run.last_choices) dropped a sentence with a false claim or had
to keep one (issue 20: a false claim is never emitted silently); clean choices get no marker."""

from __future__ import annotations

import pytest
import serve_tiny as T

import whyrec.runs
from whyrec.cli import grounding_note, main
from whyrec.eval.grounded_choice import Choice

CLEAN = Choice("It is a crime film.", 0, checked=1)
DROPPED = Choice("It is a crime film.", 1, false_claims=[("genre", "comedy")], removed=["It is a comedy."], checked=1)
KEPT = Choice("A comedy by Joel Coen.", 0, false_claims=[("genre", "comedy")], kept_false=[("genre", "comedy")])


def test_grounding_note():
    assert grounding_note(None) is None and grounding_note(CLEAN) is None
    assert grounding_note(DROPPED) == "[grounding: dropped 1 sentence(s) with a false claim]"
    assert grounding_note(KEPT) == "[grounding: still holds a false claim: genre comedy]"


@pytest.fixture
def scripted(tmp_path_factory, monkeypatch):
    """The tiny XRec run, whose explain_many returns scripted texts and grounding choices."""
    root = T.tiny_run(tmp_path_factory)
    load = whyrec.runs.load_run
    script = {"choices": None}

    def loaded(*args, **kwargs):
        run = load(*args, **kwargs)

        def explain_many(users, items, generation=None):
            run.last_choices = script["choices"][:len(users)] if script["choices"] is not None else None
            return [f"text {n}" for n in range(len(users))]

        run.explain_many = explain_many
        return run

    monkeypatch.setattr(whyrec.runs, "load_run", loaded)
    run = load(root, device="cpu")
    return root, run.catalog.users[0], run.catalog.items[0], script


def _out(capsys, args) -> list[str]:
    capsys.readouterr()
    assert main([str(a) for a in args]) == 0
    return capsys.readouterr().out.splitlines()


def test_explain_prints_the_marker_after_the_explanation(scripted, capsys):
    root, user, item, script = scripted
    args = ["explain", "--run", root, "--user", user, "--item", item, "--device", "cpu"]
    script["choices"] = [KEPT]
    assert _out(capsys, args)[1:] == ["text 0", "[grounding: still holds a false claim: genre comedy]"]
    script["choices"] = [CLEAN]
    assert _out(capsys, args)[1:] == ["text 0"]
    script["choices"] = None  # one candidate: no choice was made
    assert _out(capsys, args)[1:] == ["text 0"]


def test_recommend_marks_only_the_flagged_explanations(scripted, capsys):
    root, user, _, script = scripted
    script["choices"] = [CLEAN, DROPPED, KEPT]
    lines = _out(capsys, ["recommend", "--run", root, "--user", user, "-k", "3", "--explain", "--device", "cpu"])
    assert [line[:3] for line in lines if line[:1].isdigit()] == ["1. ", "2. ", "3. "]
    assert [line.strip() for line in lines if not line[:1].isdigit()] == [
        "text 0", "text 1", "[grounding: dropped 1 sentence(s) with a false claim]",
        "text 2", "[grounding: still holds a false claim: genre comedy]"]
