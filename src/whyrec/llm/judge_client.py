"""The LLM a `JudgeConfig` describes: judges (`whyrec evaluate`) and teacher LLMs (`whyrec data`).

`whyrec.eval.judge` scores texts and knows no client: its functions take an object with the
`whyrec.eval.judge.Judge` shape. `LLMJudge` is that object for a real LLM: the chat client the
config describes (built on first use, so a judge that is never asked costs nothing) answering
through the SQLite answer cache. Teacher pipelines take the bare client (`build_client`) and
cache (`open_cache`) instead, since they call `complete_many` themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

from whyrec.config import ModelConfig
from whyrec.eval.judge import JudgeConfig
from whyrec.llm.client import (
    ChatCache,
    ChatClient,
    LocalHFClient,
    Messages,
    OpenAICompatibleClient,
    complete_many,
)
from whyrec.utils import WhyrecError


def build_client(cfg: JudgeConfig) -> ChatClient:
    """The chat client `cfg` describes (judge or teacher LLM: the same fields)."""
    if cfg.backend == "openai":
        return OpenAICompatibleClient(
            cfg.base_url, cfg.model or "gpt-3.5-turbo", api_key_env=cfg.api_key_env, timeout=cfg.timeout,
            max_retries=cfg.max_retries, concurrency=cfg.concurrency, temperature=cfg.temperature,
        )
    if cfg.backend == "local":
        model = ModelConfig(cfg.model or "smollm2-135m-instruct", dtype=cfg.dtype, device=cfg.device)
        return LocalHFClient(model, max_tokens=cfg.max_tokens or 256, batch_size=cfg.batch_size,
                             repetition_penalty=cfg.repetition_penalty, no_repeat_ngram_size=cfg.no_repeat_ngram_size)
    raise WhyrecError(f"judge backend {cfg.backend!r} cannot answer; use --judge.backend openai or local")


def open_cache(cfg: JudgeConfig) -> ChatCache | None:
    return ChatCache(cfg.cache_path) if cfg.use_cache else None


class LLMJudge:
    """`config`'s chat client as `whyrec.eval.judge`'s functions take it (a `Judge`).

    Args:
        config: which LLM, how it is called, and its answer cache (`cache_path`, `use_cache`).
        progress: show a progress bar while answers arrive.
        client: a ready client to use instead of building one from `config` (tests, custom servers).
        cache: an open cache to use instead of `config`'s; the caller closes it.
    """

    def __init__(self, config: JudgeConfig, progress: bool = True, client: ChatClient | None = None,
                 cache: ChatCache | None = None):
        self.config, self.progress = config, progress
        self._client, self._cache = client, cache

    @property
    def client(self) -> ChatClient:
        if self._client is None:
            self._client = build_client(self.config)
        return self._client

    @property
    def backend_id(self) -> str:
        return self.client.backend_id

    @property
    def model(self) -> str:
        return self.client.model

    def answer(self, conversations: Sequence[Messages], max_tokens: int, desc: str) -> list[str]:
        if self._cache is not None:
            return complete_many(self.client, conversations, self._cache, self.progress, max_tokens, desc)
        # `config`'s cache is opened per call and closed at once, so an LLMJudge holds no open file
        # and needs no closing; answers are committed as they arrive either way.
        cache = open_cache(self.config)
        try:
            return complete_many(self.client, conversations, cache, self.progress, max_tokens, desc)
        finally:
            if cache is not None:
                cache.close()

    def choose(self, conversations: Sequence[Messages], prefix: str, options: Sequence[str]) -> list[int] | None:
        choose = getattr(self.client, "choose", None)  # local models only; endpoints generate text
        return choose(conversations, prefix, options, self.progress) if choose is not None else None
