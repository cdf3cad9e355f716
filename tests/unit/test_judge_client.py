"""Judge client against a fake OpenAI-compatible server on 127.0.0.1, and the local backend.

The fake server counts requests and answers per a `respond(n, payload)` hook, so each test can
script normal answers, malformed JSON, 5xx-then-success, slow replies and non-numeric content.
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import FakeChatEndpoint, chat_reply

from whyrec.eval.judge import (
    RECEXPLAINER_RUBRIC,
    RUBRIC_LEVELS,
    XREC_SYSTEM_PROMPT,
    JudgeConfig,
    gpt_score,
    judge_metrics,
    parse_score,
    rubric_judge,
    rubric_prompt,
)
from whyrec.llm.client import ChatCache, OpenAICompatibleClient, complete_many
from whyrec.llm.judge_client import LLMJudge
from whyrec.utils import WhyrecError


def echo_prediction(n: int, payload: dict) -> tuple[int, str]:
    """Answer GPTScore prompts with the prediction text itself, so tests choose the score."""
    return chat_reply(json.loads(payload["messages"][-1]["content"])["prediction"])


@pytest.fixture
def server():
    with FakeChatEndpoint(echo_prediction) as srv:
        yield srv


def client_for(srv: FakeChatEndpoint, **kw) -> OpenAICompatibleClient:
    kw = {"timeout": 5, "max_retries": 3, "concurrency": 4, "backoff": 0.01, **kw}
    return OpenAICompatibleClient(srv.base_url, "judge-model", api_key_env="WHYREC_TEST_KEY", **kw)


def judge_for(client, cache: ChatCache | None = None) -> LLMJudge:
    """`client` as the judge functions take it; no cache unless one is given (as the old cache=None)."""
    return LLMJudge(JudgeConfig(backend="openai", use_cache=False), progress=False, client=client, cache=cache)


def test_parse_score():
    assert parse_score("85") == 85
    assert parse_score("Score: 72.5/100") == 72.5
    assert parse_score("150") == 100 and parse_score("-3") == 0
    assert parse_score("excellent") is None and parse_score("") is None


def test_gpt_score_sends_xrec_prompt_and_aggregates(server, monkeypatch):
    monkeypatch.setenv("WHYREC_TEST_KEY", "sk-test-123")
    result = gpt_score(["80", "I'd say 60.", "not sure"], ["r1", "r2", "r3"], judge_for(client_for(server)))
    assert result["scores"] == [80.0, 60.0, None] and result["unparsed"] == 1
    assert result["gptscore_mean"] == pytest.approx(70.0)
    assert result["gptscore_std"] == pytest.approx(10.0)  # population std, as XRec's numpy
    payload = server.payloads[0]
    assert payload["model"] == "judge-model" and payload["temperature"] == 0.0 and payload["max_tokens"] == 64
    assert payload["messages"][0] == {"role": "system", "content": XREC_SYSTEM_PROMPT}
    sent = {m["messages"][1]["content"] for m in server.payloads}
    assert json.dumps({"prediction": "80", "reference": "r1"}) in sent
    assert set(server.auth) == {"Bearer sk-test-123"}


def test_all_unparsable_gives_none_not_a_crash(server):
    result = gpt_score(["good", "bad"], ["r", "r"], judge_for(client_for(server)))
    assert result["gptscore_mean"] is None and result["unparsed"] == 2


def test_retries_5xx_then_succeeds(server):
    server.respond = lambda n, p: (500, "overloaded") if n <= 2 else chat_reply("42")
    client = client_for(server, concurrency=1)
    assert complete_many(client, [[{"role": "user", "content": "q"}]], progress=False) == ["42"]
    assert server.requests == 3 and client.retries == 2


def test_retries_429_and_gives_up_with_a_clear_message(server):
    server.respond = lambda n, p: (429, '{"error": "rate limited"}')
    client = client_for(server, max_retries=2, concurrency=1)
    with pytest.raises(WhyrecError, match=r"HTTP 429.*rate limited.*after 3 attempts"):
        client.complete([{"role": "user", "content": "q"}])
    assert server.requests == 3 and client.retries == 2


def test_no_retry_on_4xx_and_key_is_never_shown(server, monkeypatch):
    monkeypatch.setenv("WHYREC_TEST_KEY", "sk-very-secret")
    server.respond = lambda n, p: (401, json.dumps({"error": "bad key sk-very-secret"}))
    client = client_for(server)
    with pytest.raises(WhyrecError, match=r"HTTP 401.*WHYREC_TEST_KEY") as err:
        client.complete([{"role": "user", "content": "q"}])
    assert "sk-very-secret" not in str(err.value)
    assert server.requests == 1 and client.retries == 0


def test_timeout_is_retried_then_reported(server):
    server.delay = 1.0
    client = client_for(server, timeout=0.2, max_retries=1)
    start = time.monotonic()
    with pytest.raises(WhyrecError, match=r"timed out after 0.2 s .*gave up after 2 attempts"):
        client.complete([{"role": "user", "content": "q"}])
    assert time.monotonic() - start < 1.5
    assert server.requests == 2 and client.retries == 1


def test_malformed_json_reply(server):
    server.respond = lambda n, p: (200, "<html>Bad gateway</html>")
    with pytest.raises(WhyrecError, match=r"not JSON: '<html>Bad gateway</html>'"):
        client_for(server).complete([{"role": "user", "content": "q"}])
    assert server.requests == 1


def test_reply_without_content(server):
    server.respond = lambda n, p: (200, json.dumps({"choices": [], "error": "x" * 500}))
    with pytest.raises(WhyrecError, match=r"no choices\[0\]\.message\.content: .*\.\.\.'$"):
        client_for(server).complete([{"role": "user", "content": "q"}])


def test_cache_makes_reruns_free(server, tmp_path):
    preds, refs = ["10", "20", "30", "10"], ["a", "b", "c", "a"]  # the last pair repeats the first
    with ChatCache(tmp_path / "cache.sqlite") as cache:
        first = gpt_score(preds, refs, judge_for(client_for(server), cache))
        assert server.requests == 3  # identical requests are sent once
    with ChatCache(tmp_path / "cache.sqlite") as cache:  # a new process would see the same file
        second = gpt_score(preds, refs, judge_for(client_for(server), cache))
        assert cache.hits == 4 and len(cache) == 3
    assert server.requests == 3 and second == first
    assert first["scores"] == [10, 20, 30, 10]


def test_cache_key_separates_models_and_params(server, tmp_path):
    msgs = [[{"role": "user", "content": "5"}]]
    server.respond = lambda n, p: chat_reply(str(n))
    with ChatCache(tmp_path / "c.sqlite") as cache:
        a = complete_many(client_for(server), msgs, cache, progress=False)
        b = complete_many(client_for(server, temperature=1.0), msgs, cache, progress=False)
        c = complete_many(client_for(server), msgs, cache, progress=False, max_tokens=7)
    assert (a, b, c) == (["1"], ["2"], ["3"])


def test_interrupted_run_resumes(server, tmp_path):
    server.respond = lambda n, p: (400, "bad request") if n == 3 else echo_prediction(n, p)
    preds = [str(i) for i in range(6)]
    with ChatCache(tmp_path / "c.sqlite") as cache:
        with pytest.raises(WhyrecError, match="HTTP 400"):
            gpt_score(preds, preds, judge_for(client_for(server, concurrency=1), cache))
        assert len(cache) == 2
        server.respond = echo_prediction
        result = gpt_score(preds, preds, judge_for(client_for(server, concurrency=1), cache))
    assert result["scores"] == [0, 1, 2, 3, 4, 5]
    assert server.requests == 3 + 4  # only the missing answers were asked again


def test_concurrency_is_used_and_bounded(server):
    server.delay = 0.2
    start = time.monotonic()
    result = gpt_score([str(i) for i in range(16)], ["r"] * 16, judge_for(client_for(server, concurrency=8)))
    elapsed = time.monotonic() - start
    assert result["scores"] == list(range(16))  # answers come back in input order
    assert 4 <= server.max_inflight <= 8
    assert elapsed < 16 * 0.2 / 2


def test_rubric_judge(server):
    replies = ["<score>C</score>", "Fine. <score>d</score> overall", "<score>C</score>", "no idea"]
    server.respond = lambda n, p: chat_reply(replies[int(p["messages"][1]["content"][-1])])
    contexts = [{"history": ["Halo 3", "Gears of War"], "target_item": "Forza", "label": True}] * 4
    result = rubric_judge([f"because {i}" for i in range(4)], contexts, judge_for(client_for(server)))
    assert result["labels"] == ["C", "D", "C", None] and result["unparsed"] == 1
    assert result["C"] == pytest.approx(2 / 3) and result["D"] == pytest.approx(1 / 3) and result["A"] == 0
    user = server.payloads[0]["messages"][1]["content"]
    assert "User history: Halo 3, Gears of War\nTarget item: Forza\nLabel: Yes\n" in user
    assert server.payloads[0]["max_tokens"] == 500


def test_rubric_prompt_has_four_levels_and_checks_context():
    for level in "ABCD":
        assert f"{level}. <score>{level}</score>:" in RECEXPLAINER_RUBRIC
    assert rubric_prompt("x", {"history": "a, b", "target_item": "t", "label": "No"}).endswith(
        "User history: a, b\nTarget item: t\nLabel: No\nAssistant's output: x")
    with pytest.raises(WhyrecError, match="lacks target_item, label"):
        rubric_prompt("x", {"history": []})


def test_judge_metrics_from_config(server, tmp_path):
    cfg = JudgeConfig(backend="openai", base_url=server.base_url, model="m", api_key_env="",
                      cache_path=str(tmp_path / "c.sqlite"), max_retries=0)
    out = judge_metrics(["90", "70"], ["a", "b"], LLMJudge(cfg, progress=False))
    assert out["gptscore"]["gptscore_mean"] == 80 and out["judge"]["model"] == "m"
    assert server.auth == [None, None]  # no key configured, no header sent
    # The config's cache file was closed after the first run and is reopened by a new judge.
    assert judge_metrics(["90", "70"], ["a", "b"], LLMJudge(cfg, progress=False)) == out
    assert server.requests == 2
    # backend 'none' judges nothing and builds no client (build_client refuses 'none')
    assert judge_metrics(["x"], ["y"], LLMJudge(JudgeConfig())) == {}
    with pytest.raises(WhyrecError, match="must start with http"):
        judge_metrics(["x"], ["y"], LLMJudge(JudgeConfig(backend="openai", base_url="localhost:1")))


class ScriptedJudge:
    """A judge with no LLM behind it: eval.judge needs only this shape, never a client."""

    def __init__(self, replies, picks=None, backend="openai"):
        self.config = JudgeConfig(backend=backend, constrained=picks is not None)
        self.backend_id, self.model = "scripted", "script"
        self.replies, self.picks, self.asked = replies, picks, []

    def answer(self, conversations, max_tokens, desc):
        self.asked.append((desc, max_tokens, len(conversations)))
        return self.replies[:len(conversations)]

    def choose(self, conversations, prefix, options):
        assert prefix == "<score>" and tuple(options) == RUBRIC_LEVELS
        return self.picks


def test_judge_functions_take_any_object_of_the_judge_shape():
    contexts = [{"history": "h", "target_item": "t", "label": True}] * 2
    judge = ScriptedJudge(["55", "<score>B</score>"])
    out = judge_metrics(["p1", "p2"], ["r1", "r2"], judge, contexts)
    assert out["gptscore"]["scores"] == [55.0, None] and out["judge"]["model"] == "script"
    assert out["rubric"]["labels"] == [None, "B"] and out["rubric"]["mode"] == "generated"
    assert judge.asked == [("GPTScore", 64, 2), ("rubric", 500, 2)]
    picked = ScriptedJudge([], picks=[3, 0])  # a judge that can choose is never asked to write
    assert rubric_judge(["e1", "e2"], contexts, picked, constrained=True)["labels"] == ["D", "A"]
    assert picked.asked == []
    # a judge that cannot choose (an endpoint: None) writes its grades instead
    assert rubric_judge(["e"], contexts[:1], ScriptedJudge(["<score>C</score>"]), constrained=True)["mode"] == "generated"


def test_evaluate_texts_needs_the_judge_not_its_config():
    from whyrec.eval.report import evaluate_texts

    assert "gptscore" not in evaluate_texts(["a b"], ["a b"], judge=JudgeConfig())  # backend 'none'
    with pytest.raises(WhyrecError, match=r"judge=whyrec\.llm\.judge_client\.LLMJudge\(config\)"):
        evaluate_texts(["a b"], ["a b"], judge=JudgeConfig(backend="openai"))
    scored = evaluate_texts(["a b"], ["a b"], judge=ScriptedJudge(["70"]))
    assert scored["gptscore"]["gptscore_mean"] == 70 and scored["judge"]["backend"] == "scripted"


def test_local_backend_with_tiny_model(tmp_path):
    import torch

    from whyrec.config import ModelConfig
    from whyrec.llm.client import LocalHFClient

    torch.set_num_threads(1)
    client = LocalHFClient(ModelConfig("tiny-random-llama", device="cpu"), batch_size=2)
    preds, refs = ["great strings", "a", "the sound is warm"], ["good strings", "b", "warm tone"]
    with ChatCache(tmp_path / "c.sqlite") as cache:
        result = gpt_score(preds, refs, judge_for(client, cache))
        convs = [[{"role": "system", "content": XREC_SYSTEM_PROMPT},
                  {"role": "user", "content": json.dumps({"prediction": p, "reference": r})}]
                 for p, r in zip(preds, refs)]
        replies = complete_many(client, convs, cache, progress=False, max_tokens=64)
        assert cache.hits == 3  # the second call came entirely from the cache
    assert all(isinstance(r, str) for r in replies)
    assert result["unparsed"] == sum(parse_score(r) is None for r in replies)
    assert [s is None for s in result["scores"]] == [parse_score(r) is None for r in replies]
    # Left-padded batches decode exactly as one prompt at a time would.
    one_by_one = [complete_many(client, [c], progress=False, max_tokens=64)[0] for c in convs]
    assert one_by_one == replies


def test_cli_evaluate_with_judge(server, tmp_path, capsys):
    import json

    from whyrec.cli import main

    preds, refs = tmp_path / "p.txt", tmp_path / "r.txt"
    preds.write_text("90\n70\n")
    refs.write_text("a\nb\n")
    assert main(["evaluate", "--predictions", str(preds), "--references", str(refs), "--out", str(tmp_path / "e"),
                 "--judge.backend", "openai", "--judge.base_url", server.base_url, "--judge.model", "m",
                 "--judge.api_key_env", "", "--judge.cache_path", str(tmp_path / "c.sqlite")]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["gptscore"]["gptscore_mean"] == 80 and metrics["judge"]["model"] == "m"
    assert "GPTScore" in (tmp_path / "e" / "report.md").read_text()


def test_local_client_no_repeat_ngram_blocks_repeats_and_keys_cache():
    import torch

    from whyrec.config import ModelConfig
    from whyrec.llm.client import LocalHFClient

    torch.set_num_threads(1)
    config = ModelConfig("tiny-random-llama", device="cpu")
    plain = LocalHFClient(config, batch_size=2)
    guarded = LocalHFClient(config, batch_size=2, no_repeat_ngram_size=2, repetition_penalty=1.3)
    convs = [[{"role": "user", "content": "tone"}], [{"role": "user", "content": "strings and pedals"}]]
    for reply in complete_many(guarded, convs, progress=False, max_tokens=40):
        # The byte-level tiny tokenizer makes every character a token: no character bigram repeats
        # (bytes that are not valid UTF-8 all decode to U+FFFD, so those pairs are not comparable).
        pairs = [reply[i:i + 2] for i in range(len(reply) - 1) if "\ufffd" not in reply[i:i + 2]]
        assert len(pairs) == len(set(pairs)), reply
    # Different decoding options must not share cached answers.
    assert plain.cache_params() != guarded.cache_params()
    assert plain.cache_params() == {"max_tokens": 256, "dtype": config.dtype, "greedy": True}


def test_local_constrained_rubric_grades_every_explanation_with_the_most_likely_letter():
    import torch

    from whyrec.config import ModelConfig
    from whyrec.llm.client import LocalHFClient, _apply_template

    client = LocalHFClient(ModelConfig("tiny-random-llama", device="cpu"), batch_size=3)
    contexts = [{"history": ["Halo 3"], "target_item": f"Forza {i}", "label": i % 2 == 0} for i in range(5)]
    explanations = ["yes, racing", "no", "because the user likes shooters and cars", "maybe", "x " * 30]
    result = rubric_judge(explanations, contexts, judge_for(client), constrained=True)
    assert result["mode"] == "constrained" and result["unparsed"] == 0
    assert set(result["labels"]) <= set(RUBRIC_LEVELS) and sum(result["counts"].values()) == 5
    # each batched, left-padded pick is the argmax over the four letters for that prompt alone
    model, tok = client._load()
    letters = [tok("<score>" + lv, add_special_tokens=False).input_ids[-1] for lv in RUBRIC_LEVELS]
    for expl, ctx, label in zip(explanations, contexts, result["labels"]):
        conv = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": rubric_prompt(expl, ctx)}]
        ids = tok(_apply_template(tok, conv) + "<score>", return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1, letters]
        assert RUBRIC_LEVELS[int(logits.argmax())] == label
    generated = rubric_judge(explanations[:2], contexts[:2], judge_for(client), max_tokens=4, constrained=False)
    assert generated["mode"] == "generated"
