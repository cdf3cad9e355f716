"""LLM-as-judge scores for generated explanations.

- `gpt_score`: XRec's GPTScore (Ma et al., "XRec: Large Language Models for Explainable
  Recommendation", EMNLP 2024 Findings; `evaluation/metrics.py` and
  `evaluation/system_prompt.txt` in HKUDS/XRec, METHODS §3.6). Same system prompt, same user
  message `json.dumps({"prediction", "reference"})`, mean and population std of the scores.
  Deviations: XRec parses the whole reply with `float()` and crashes on anything else; we take
  the first number, clamp it to [0, 100] and count unparsable replies instead of crashing.
  XRec used the API's default temperature (1.0); we default to 0 so scores are reproducible.
- `rubric_judge`: RecExplainer's four-level A-D rubric (Lei et al., "RecExplainer: Aligning
  Large Language Models for Explaining Recommendation Models", KDD 2024;
  `RecExplainer/preprocess/eval_explan.py` and `gpt_api.py` in microsoft/RecAI, METHODS §5.3).
  The four level definitions and the `<score>X</score>` answer format follow the original; the
  wording is ours. Deviation: RecExplainer accepts only
  a reply that is exactly `<score>X</score>`; we take the first such tag anywhere in the reply,
  since smaller judges add words around it.

The judge is a local HF model or any OpenAI-compatible endpoint. This module only scores: it
takes the judge as an object with the `Judge` shape (`whyrec.llm.judge_client.LLMJudge` builds
one from a `JudgeConfig`), so eval never imports the LLM layer above it.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from whyrec.utils import WhyrecError

Messages = list[dict[str, str]]  # one chat conversation: [{"role": ..., "content": ...}, ...]

# evaluation/system_prompt.txt at HKUDS/XRec (read with f.read(): one newline, none at the end).
XREC_SYSTEM_PROMPT = (
    "Score the given explanation against the ground truth on a scale from 0 to 100, focusing on the "
    "alignment of meanings rather than the formatting.\n"
    "Provide your score as a number and do not provide any other text."
)

# RecExplainer's four levels (METHODS §5.3), written in our own words: the level meanings and
# the <score>X</score> answer format follow the original so shares stay comparable.
_RUBRIC_PARTS = [
    "You are an impartial judge. Given a user's history, a target item and the true label (whether "
    "the user interacted with the item), grade the assistant's recommendation decision and its "
    "explanation on four levels:",
    "A. <score>A</score>: wrong decision - the assistant's yes/no recommendation does not match the label.",
    "B. <score>B</score>: right decision, weak explanation - the explanation is missing, thin, off-topic, "
    "or states things that are not true of the history or the item.",
    "C. <score>C</score>: right decision, acceptable explanation - the reasoning is coherent and consistent "
    "with the history and the item, but could be more informative or convincing.",
    "D. <score>D</score>: right decision, convincing explanation - it summarises the user's patterns and "
    "preferences and analyses how well the target item fits or does not fit them.",
    "Answer only with the tag, e.g. <score>C</score>. Judge content, not length.",
    "User history: {0}\nTarget item: {1}\nLabel: {2}\nAssistant's output: {3}",
]
RECEXPLAINER_RUBRIC = "\n".join(_RUBRIC_PARTS)
RECEXPLAINER_SYSTEM_PROMPT = "You are a helpful assistant."
RUBRIC_LEVELS = ("A", "B", "C", "D")

GPTSCORE_MAX_TOKENS = 64  # the prompt asks for a bare number; room for a chatty "I'd score it 80"
RUBRIC_MAX_TOKENS = 500  # RecExplainer's max_tokens

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?|-?\.\d+")
_SCORE_TAG = re.compile(r"<score>\s*([ABCD])\s*</score>", re.IGNORECASE)


@dataclass
class JudgeConfig:
    """Which LLM judges explanations, and how it is called."""

    backend: str = "none"
    """'none' (skip LLM judging), 'openai' (any OpenAI-compatible endpoint) or 'local' (HF model)."""
    model: str | None = None
    """Endpoint model name, or local model name/folder. None: 'gpt-3.5-turbo' (XRec's judge) for
    openai, 'smollm2-135m-instruct' for local."""
    base_url: str = "https://api.openai.com/v1"
    """OpenAI-compatible base URL; the client POSTs to {base_url}/chat/completions."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (the key itself never goes in a config)."""
    timeout: float = 30.0
    """Seconds per HTTP request."""
    max_retries: int = 3
    """Extra attempts after a timeout, connection error, HTTP 429 or 5xx."""
    concurrency: int = 8
    """HTTP requests in flight at once (XRec used 100 threads; mind your rate limit)."""
    temperature: float = 0.0
    """Sampling temperature for the endpoint (0: reproducible; XRec/RecExplainer used 1.0)."""
    max_tokens: int | None = None
    """Answer length cap. None: 64 for GPTScore, 500 for the rubric (RecExplainer's)."""
    device: str = "auto"
    """Device of a local judge."""
    dtype: str = "auto"
    """Dtype of a local judge."""
    batch_size: int = 8
    """Prompts per generate() call for a local judge."""
    repetition_penalty: float = 1.0
    """Local model only: >1 penalises repeated tokens (1.1-1.3 stops small models looping)."""
    no_repeat_ngram_size: int = 0
    """Local model only: forbid repeating any n-gram of this size (0: off)."""
    cache_path: str | None = None
    """SQLite answer cache. None: $WHYREC_CACHE/chat_cache.sqlite."""
    use_cache: bool = True
    """Reuse cached answers (reruns are free and interrupted runs resume)."""
    constrained: bool = True
    """Local judge, rubric only: read the grade from the next-token probabilities of A/B/C/D after
    '<score>' (every explanation gets one) instead of parsing generated text, which small local
    models rarely format (SmolLM2-135M left 79 of 80 unparsed). Endpoints always generate."""

    def __post_init__(self):
        from whyrec.config import DTYPES, check, check_choice, check_device

        check_choice(self, "backend", ("none", "openai", "local"))
        check(self, "> 0", "timeout", "repetition_penalty")
        check(self, ">= 0", "max_retries", "temperature", "no_repeat_ngram_size")  # temperature 0: reproducible
        check(self, ">= 1", "concurrency", "batch_size")
        check(self, ">= 1", "max_tokens", optional=True)
        check_device(self)
        check_choice(self, "dtype", DTYPES)


class Judge(Protocol):
    """What the judge functions ask of an LLM (`whyrec.llm.judge_client.LLMJudge` is one)."""

    config: JudgeConfig
    backend_id: str
    """Identifies the backend, e.g. 'openai:https://api.openai.com/v1' or 'local'."""
    model: str

    def answer(self, conversations: Sequence[Messages], max_tokens: int, desc: str) -> list[str]:
        """One reply per conversation, in order; `desc` labels the progress bar."""
        ...

    def choose(self, conversations: Sequence[Messages], prefix: str, options: Sequence[str]) -> list[int] | None:
        """Per conversation, the index of the option most likely right after `prefix`; None when
        the backend cannot tell (an endpoint), so the caller lets the judge write a reply."""
        ...


def parse_score(reply: str) -> float | None:
    """First number in the reply, clamped to [0, 100]; None when there is none."""
    match = _NUMBER.search(reply)
    return None if match is None else min(100.0, max(0.0, float(match.group())))


def parse_rubric_label(reply: str) -> str | None:
    match = _SCORE_TAG.search(reply)
    return None if match is None else match.group(1).upper()


def gpt_score(predictions: Sequence[str], references: Sequence[str], judge: Judge,
              max_tokens: int | None = None) -> dict:
    """XRec's GPTScore: the judge rates each prediction's alignment with its reference, 0-100.

    Returns:
        gptscore_mean / gptscore_std (population std, as numpy's default in XRec) over parsed
        replies, or None if none parsed; `scores` per pair (None where unparsable); `unparsed` count.
    """
    if len(predictions) != len(references):
        raise WhyrecError(f"{len(predictions)} predictions but {len(references)} references; they must pair up")
    conversations: list[Messages] = [
        [{"role": "system", "content": XREC_SYSTEM_PROMPT},
         {"role": "user", "content": json.dumps({"prediction": p, "reference": r})}]
        for p, r in zip(predictions, references)
    ]
    replies = judge.answer(conversations, max_tokens or GPTSCORE_MAX_TOKENS, "GPTScore")
    scores = [parse_score(r) for r in replies]
    valid = [s for s in scores if s is not None]
    return {
        "gptscore_mean": statistics.fmean(valid) if valid else None,
        "gptscore_std": statistics.pstdev(valid) if valid else None,
        "scores": scores,
        "unparsed": len(scores) - len(valid),
    }


def rubric_prompt(explanation: str, context: Mapping) -> str:
    """RecExplainer's judge prompt for one explanation.

    `context` needs `history` (item titles, a list or one string), `target_item` (title) and
    `label` (the target model's decision: 'Yes'/'No' or a bool).
    """
    missing = [k for k in ("history", "target_item", "label") if k not in context]
    if missing:
        raise WhyrecError(f"rubric context lacks {', '.join(missing)} (needs history, target_item, label)")
    history = context["history"]
    history = history if isinstance(history, str) else ", ".join(map(str, history))
    label = context["label"]
    label = ("Yes" if label else "No") if isinstance(label, bool) else str(label)
    return RECEXPLAINER_RUBRIC.format(history, context["target_item"], label, explanation)


def rubric_judge(explanations: Sequence[str], contexts: Sequence[Mapping], judge: Judge,
                 max_tokens: int | None = None, constrained: bool = False) -> dict:
    """RecExplainer's A-D rubric. Returns the share of each level among parsed replies,
    `counts`, `labels` per explanation (None where unparsable), the `unparsed` count and `mode`.

    `constrained` with a judge that can `choose` (a local model): the grade is the level whose
    tag letter is most probable right after '<score>' (mode 'constrained'); otherwise the judge
    writes a reply and its first <score>X</score> tag is read (mode 'generated')."""
    if len(explanations) != len(contexts):
        raise WhyrecError(f"{len(explanations)} explanations but {len(contexts)} contexts; they must pair up")
    conversations: list[Messages] = [
        [{"role": "system", "content": RECEXPLAINER_SYSTEM_PROMPT},
         {"role": "user", "content": rubric_prompt(e, c)}]
        for e, c in zip(explanations, contexts)
    ]
    picks = judge.choose(conversations, "<score>", RUBRIC_LEVELS) if constrained else None
    if picks is not None:
        labels, mode = [RUBRIC_LEVELS[p] for p in picks], "constrained"
    else:
        replies = judge.answer(conversations, max_tokens or RUBRIC_MAX_TOKENS, "rubric")
        labels, mode = [parse_rubric_label(r) for r in replies], "generated"
    counts = {level: labels.count(level) for level in RUBRIC_LEVELS}
    parsed = sum(counts.values())
    shares = {level: (counts[level] / parsed if parsed else None) for level in RUBRIC_LEVELS}
    return {**shares, "counts": counts, "labels": labels, "unparsed": len(labels) - parsed, "mode": mode}


def judge_metrics(predictions: Sequence[str], references: Sequence[str], judge: Judge,
                  contexts: Sequence[Mapping] | None = None) -> dict:
    """Everything `whyrec evaluate` reports for the judge: GPTScore, the rubric when contexts are
    given, and which judge produced them (for metrics.json). Empty when the backend is 'none'."""
    cfg = judge.config
    if cfg.backend == "none":
        return {}
    about = {"backend": judge.backend_id, "model": judge.model, "temperature": cfg.temperature,
             "prompts": "XRec GPTScore system prompt; whyrec A-D rubric after RecExplainer"}
    if cfg.backend == "local":
        about["temperature"] = 0.0  # greedy decoding
    out = {"judge": about, "gptscore": gpt_score(predictions, references, judge, cfg.max_tokens)}
    if contexts is not None:
        out["rubric"] = rubric_judge(predictions, contexts, judge, cfg.max_tokens, constrained=cfg.constrained)
    return out
