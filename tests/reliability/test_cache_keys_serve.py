"""The judge/teacher chat cache, the serve explanation cache and the prompt-reduction cache are keyed
by what produced them (issue 17 §7): a model retrained in place at the same path, a replaced base
model or a changed decoding setting is answered again, never from the old cache."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from tiny_runs import save_tiny_model, tiny_pepler


# ---------------------------------------------------------------- judge / teacher chat cache
def test_chat_cache_keys_a_local_model_by_its_weights(tmp_path):
    from whyrec.config import ModelConfig
    from whyrec.llm.client import ChatCache, LocalHFClient, OpenAICompatibleClient, complete_many
    model_dir = tmp_path / "judge"
    generated: list[int] = []

    class Counting(LocalHFClient):
        def _generate(self, chunk, max_new_tokens):
            generated.append(len(chunk))
            return super()._generate(chunk, max_new_tokens)

    convs = [[{"role": "user", "content": f"rate {k}"}] for k in range(3)]
    config = ModelConfig(str(model_dir), device="cpu")
    save_tiny_model(model_dir, seed=0)
    with ChatCache(tmp_path / "chat.sqlite") as cache:
        first = complete_many(Counting(config, max_tokens=3), convs, cache, progress=False)
        assert complete_many(Counting(config, max_tokens=3), convs, cache, progress=False) == first
        assert sum(generated) == 3  # the same weights: every answer came from the cache
        key = ChatCache.key(Counting(config), convs[0])
        save_tiny_model(model_dir, seed=1)  # retrained in place: same name, other weights
        assert ChatCache.key(Counting(config), convs[0]) != key
        complete_many(Counting(config, max_tokens=3), convs, cache, progress=False)
        assert sum(generated) == 6
    # A server's model is known only by its name: its keys are what they were (old caches stay valid).
    remote = OpenAICompatibleClient("http://127.0.0.1:9/v1", "judge-model")
    old_blob = json.dumps([remote.backend_id, remote.model, convs[0], remote.cache_params()], sort_keys=True,
                          ensure_ascii=False)
    import hashlib

    assert ChatCache.key(remote, convs[0]) == hashlib.sha256(old_blob.encode()).hexdigest()


# ---------------------------------------------------------------- serve
def test_serve_never_answers_from_another_revisions_cache(tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'whyrec[serve]')")
    from fastapi.testclient import TestClient

    from whyrec.serve.server import build_app

    run, db = tiny_pepler(tmp_path / "run", seed=0), str(tmp_path / "serve.sqlite")

    def ask(expect_cached: bool) -> str:
        app = build_app(str(run), cache=db)
        with TestClient(app) as client:
            got = client.post("/explain", json={"user": "u1", "item": "i2"}).json()
        app.state.cache.close()
        assert got["cached"] is expect_cached, got
        return got["revision"]

    first = ask(False)
    assert ask(True) == first  # a restart on the same folder reuses the answer
    tiny_pepler(run, seed=1)  # retrained in place
    second = ask(False)
    assert second != first and ask(True) == second


def test_serve_never_answers_for_a_replaced_base_model(tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'whyrec[serve]')")
    from whyrec.serve.server import build_app

    base = tmp_path / "base"
    save_tiny_model(base, seed=0)
    run = tiny_pepler(tmp_path / "run", seed=0, base=str(base))

    def revision() -> str:
        app = build_app(str(run), cache="none")
        return app.state.model.revision

    first = revision()
    save_tiny_model(base, seed=1)  # the run's adapter is unchanged; the weights under it are not
    assert revision() != first


# ---------------------------------------------------------------- prompt reduction
def test_prompt_reduction_cache_is_keyed_and_resumes(tmp_path, capsys):
    from whyrec.eval.titles import candidates_from_prompt
    from whyrec.methods.recalpaca.prompt_reduction import DECODING, prompt_reduction

    rows = [{"instruction": "Pick five films.", "top1": f"A{k}", "testGT": [f"A{k}", f"C{k}"],
             "input": f"score 5 out 5: ['X{k}', 'Y{k}']\nlikely to like: "
                      + "[" + ", ".join(f"'{c}{k}'" for c in "ABCDEF") + "].\n"} for k in range(5)]
    test_json = tmp_path / "test.json"
    test_json.write_text(json.dumps(rows))
    asked: list[int] = []

    def copy_the_list(prompts):
        asked.append(len(prompts))
        if len(asked) == 2 and fail[0]:
            raise KeyboardInterrupt
        return ["\n".join(f"{j}. {t}" for j, t in enumerate(candidates_from_prompt(x)[:5], 1)) for _, x in prompts]

    out, fail, two = tmp_path / "reduction", [True], replace(DECODING, batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        prompt_reduction(None, test_json, out, fractions=(1.0,), gen=two, generate=copy_the_list)
    fail[0] = False
    table = prompt_reduction(None, test_json, out, fractions=(1.0,), gen=two, generate=copy_the_list)
    assert asked == [2, 2, 2, 1]  # the interrupted second batch and the last; not the first again
    assert table[0]["precision@5"] == pytest.approx(table[0]["prompt_order_precision@5"])
    assert prompt_reduction(None, test_json, out, fractions=(1.0,), gen=two, generate=copy_the_list) == table
    assert len(asked) == 4  # unchanged: all cached
    prompt_reduction(None, test_json, out, fractions=(1.0,), gen=replace(two, max_new_tokens=50), generate=copy_the_list)
    assert len(asked) == 7 and "max_new_tokens (200 -> 50)" in capsys.readouterr().err
