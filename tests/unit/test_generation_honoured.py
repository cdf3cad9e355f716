"""One GenerationConfig for every path (issue 18 leftovers): a `--generation.*` field a method's decoder
ignores is refused with one line (`whyrec.methods.base.check_generation`), `whyrec serve` has one
decoding batch, and cache keys/revisions change only once a newly added decoding field is set."""

from __future__ import annotations

from dataclasses import replace

import pytest
import serve_tiny as T

from whyrec.cli import main
from whyrec.config import GenerationConfig, mark_given
from whyrec.methods.base import check_generation, decoding_key, generation_set, uses_generation
from whyrec.registry import METHODS
from whyrec.utils import WhyrecError

PEPLER = METHODS.get("pepler")


def test_generation_set_names_fields_away_from_their_defaults():
    assert generation_set(None) == [] and generation_set(GenerationConfig()) == []
    assert generation_set(GenerationConfig(num_beams=3, do_sample=True)) == ["do_sample", "num_beams"]


def test_only_pepler_decodes_its_own_way_in_the_benchmark():
    """The benchmark (and head_to_head's stage arguments) read this declaration, not a method name."""
    own = {name for name in METHODS.names() if not uses_generation(METHODS.get(name))}
    assert own == {"pepler"}
    assert uses_generation(object())  # a method that says nothing decodes through whyrec.llm.generate


def test_pepler_honours_only_the_batch_and_refuses_the_rest_in_one_line():
    check_generation(PEPLER, GenerationConfig(batch_size=4))  # honoured: pairs decoded together
    with pytest.raises(WhyrecError) as e:
        check_generation(PEPLER, GenerationConfig(num_beams=3, no_repeat_ngram_size=2, batch_size=4))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("--method pepler does not use --generation.num_beams (")
    assert "--pepler.words" in msg and "nor --generation.no_repeat_ngram_size" in msg and "batch_size" not in msg
    for name in ("xrec", "gavamoe", "recexplainer", "recalpaca"):  # no generation_fields: every field honoured
        check_generation(METHODS.get(name), GenerationConfig(num_beams=3, min_new_tokens=2, no_repeat_ngram_size=2))


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("whyrec: error: "), err
    return err[0]


def test_pepler_explain_refuses_ignored_generation_fields(tmp_path_factory, capsys):
    run = str(T.tiny_pepler(tmp_path_factory, "continuous"))
    capsys.readouterr()
    err = _one_line_error(capsys, ["explain", "--run", run, "--user", "u0", "--item", "i1", "--device", "cpu",
                                   "--generation.do_sample", "true", "--generation.repetition_penalty", "1.3"])
    assert "--method pepler does not use --generation.do_sample" in err
    assert "nor --generation.repetition_penalty" in err
    assert main(["explain", "--run", run, "--user", "u0", "--item", "i1", "--device", "cpu",
                 "--generation.batch_size", "2"]) == 0  # the batch is honoured


def test_pepler_run_checks_a_per_call_generation(tmp_path_factory):
    import whyrec

    run = whyrec.load_run(T.tiny_pepler(tmp_path_factory, "continuous"), device="cpu")
    pairs = (["u0", "u1", "u2"], ["i1", "i2", "i3"])
    together = run.explain_many(*pairs)
    assert run.explain_many(*pairs, generation=GenerationConfig(batch_size=1)) == together  # batches of one
    with pytest.raises(WhyrecError, match="does not use --generation.num_beams"):
        run.explain_many(*pairs, generation=GenerationConfig(num_beams=2))


def test_pepler_evaluate_refuses_generation_fields(tmp_path_factory, tmp_path, capsys):
    run = str(T.tiny_pepler(tmp_path_factory, "continuous"))
    capsys.readouterr()
    err = _one_line_error(capsys, ["evaluate", "--run", run, "--data", str(tmp_path), "--out", str(tmp_path / "ev"),
                                   "--generation.batch_size", "4"])
    assert "does not use --generation.batch_size (its evaluation decodes in batches of its --pepler.batch_size)" in err


# ---------------------------------------------------------------- serve: one decoding batch


def test_serve_batch_is_one_setting():
    from whyrec.serve.settings import ServeSettings, one_batch

    assert one_batch(ServeSettings(), None).max_batch == 8
    assert one_batch(ServeSettings(), GenerationConfig()).max_batch == 8  # neither given
    assert one_batch(ServeSettings(), GenerationConfig(batch_size=4)).max_batch == 4  # only --generation.batch_size
    assert one_batch(ServeSettings(max_batch=3), GenerationConfig()).max_batch == 3  # only --max_batch
    assert one_batch(ServeSettings(max_batch=4), GenerationConfig(batch_size=4)).max_batch == 4  # both, agreeing
    with pytest.raises(WhyrecError, match=r"^--max_batch 3 and --generation.batch_size 4 disagree"):
        one_batch(ServeSettings(max_batch=3), GenerationConfig(batch_size=4))
    given_default = GenerationConfig()
    mark_given(given_default, {"batch_size"})  # --generation.batch_size 16 on the command line: 16 is its default
    assert one_batch(ServeSettings(), given_default).max_batch == 16
    with pytest.raises(WhyrecError, match=r"^--max_batch 3 and --generation.batch_size 16 disagree"):
        one_batch(ServeSettings(max_batch=3), given_default)


def test_serve_refuses_both_batches_before_listening(tmp_path, capsys):
    err = _one_line_error(capsys, ["serve", "--run", str(tmp_path), "--port", "0", "--max_batch", "3",
                                   "--generation.batch_size", "4"])
    assert "--max_batch 3 and --generation.batch_size 4 disagree" in err and "give only one" in err


def test_serve_decodes_in_the_generation_batch(tmp_path_factory):
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'whyrec[serve]')")
    from whyrec.serve.server import build_app

    app = build_app(str(T.tiny_pepler(tmp_path_factory, "continuous")), generation=GenerationConfig(batch_size=3),
                    cache="none")
    assert app.state.batcher.max_batch == 3 and app.state.model.gen.batch_size == 3
    with pytest.raises(WhyrecError, match="does not use --generation.num_beams"):  # refused before loading
        build_app(str(T.tiny_pepler(tmp_path_factory, "continuous")), generation=GenerationConfig(num_beams=2),
                  cache="none")


# ---------------------------------------------------------------- cache keys


def test_benchmark_generation_key_changes_only_once_a_new_field_is_set():
    from whyrec.benchmark_cache import generation_settings, settings

    old = settings(GenerationConfig())  # what keyed predictions before: every field
    for field in ("min_new_tokens", "num_beams", "no_repeat_ngram_size", "candidates", "select", "eos_bias"):
        old.pop(field)
    assert generation_settings(GenerationConfig()) == old
    assert generation_settings(GenerationConfig(num_beams=2))["num_beams"] == 2


def test_decoding_key_keeps_old_keys_and_names_what_is_set():
    implicit = GenerationConfig(max_new_tokens=200, batch_size=8, repetition_penalty=1.0)
    named = ("max_new_tokens", "repetition_penalty", "batch_size")
    assert decoding_key(implicit, implicit, named) == {"max_new_tokens": 200, "repetition_penalty": 1.0,
                                                        "batch_size": 8}
    assert decoding_key(replace(implicit, num_beams=2), implicit, named)["num_beams"] == 2


def test_served_revision_keeps_its_old_value_and_moves_with_a_new_field(tmp_path_factory, monkeypatch):
    from dataclasses import asdict

    import whyrec.methods.gavamoe.served as served
    from whyrec.registry import method_of

    folder = T.tiny_gavamoe(tmp_path_factory)
    hashed = []
    real = served.revision
    monkeypatch.setattr(served, "revision", lambda *a: hashed.append(a[-1]) or real(*a))
    default = method_of(folder).load(folder, device="cpu", generation=GenerationConfig()).revision
    new = ("min_new_tokens", "num_beams", "no_repeat_ngram_size", "candidates", "select", "eos_bias")
    assert hashed == [repr(sorted((k, v) for k, v in asdict(GenerationConfig()).items() if k not in new))]
    assert method_of(folder).load(folder, device="cpu", generation=GenerationConfig(num_beams=2)).revision != default
