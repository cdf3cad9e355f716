"""`whyrec serve --generation.candidates N` (issue 20): grounding-aware decoding is chosen by
whyrec.runs.Run, which the server does not go through, so serve refuses it in one line before the
port opens (and build_app before loading), instead of silently decoding one candidate."""

from __future__ import annotations

import pytest

import whyrec.serve.server as SV
from whyrec.cli import main
from whyrec.config import GenerationConfig
from whyrec.utils import WhyrecError


def test_serve_refuses_candidates_before_listening(tmp_path, capsys, monkeypatch):
    def listen(*args):
        raise AssertionError("the port was opened")

    monkeypatch.setattr(SV, "listen", listen)
    capsys.readouterr()
    assert main(["serve", "--run", str(tmp_path), "--port", "0", "--generation.candidates", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("whyrec: error: --generation.candidates 3: ")
    assert "grounding-aware decoding is not served yet; use whyrec explain/recommend" in err


def test_load_served_refuses_candidates_and_accepts_one(tmp_path):
    from whyrec.serve.load import check_servable, load_served

    with pytest.raises(WhyrecError, match="not served yet"):
        load_served(tmp_path, generation=GenerationConfig(candidates=2))  # before the folder is even read
    check_servable(None)
    check_servable(GenerationConfig(candidates=1))
