"""Chat-completion clients for LLM judges and teacher LLMs, with a resumable answer cache.

Two backends behind one duck-typed interface (`ChatClient`):

- `OpenAICompatibleClient`: POST `{base_url}/chat/completions` (OpenAI, Azure-compatible
  gateways, vLLM, llama.cpp server, Ollama ...) with the standard library only; retries with
  exponential backoff on timeouts, 429 and 5xx; a thread pool bounds concurrency.
- `LocalHFClient` (`whyrec.llm.local_chat`, re-exported here): the model's chat template and
  batched `generate` on a local HF model, greedy unless built `for_generation` with a
  GenerationConfig that says otherwise (the benchmark's zero-shot row).

`ChatCache` stores every answer in SQLite keyed by (backend, model, messages, params), so a
rerun costs nothing and an interrupted run resumes; for a local model the params include the
identity of the weights its name loads, so a retrained or replaced model is asked again.
`complete_many` ties it together.
XRec's GPTScore and RecExplainer's rubric judge (`whyrec.eval.judge`) and the profile writer
of XRec's data pipeline use it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from itertools import islice
from pathlib import Path
from typing import Protocol

# re-exported: every chat client imports from here
from whyrec.llm.local_chat import LocalHFClient, Messages, _apply_template  # noqa: F401
from whyrec.utils import WhyrecError, cache_dir

log = logging.getLogger(__name__)


class ChatClient(Protocol):
    backend_id: str
    """Identifies the backend in cache keys, e.g. 'openai:https://api.openai.com/v1' or 'local'."""
    model: str

    def cache_params(self, max_tokens: int | None = None) -> dict:
        """Everything besides the messages that can change an answer."""
        ...

    def iter_complete(self, batch: Sequence[Messages], max_tokens: int | None = None) -> Iterator[tuple[int, str]]:
        """Yield (index into `batch`, answer) as answers arrive, in any order."""
        ...


def _short(text: str, n: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n] + "..."


class _Transient(Exception):
    """A failure worth retrying (timeout, connection drop, 429, 5xx)."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class OpenAICompatibleClient:
    """Chat completions over HTTP from any OpenAI-compatible server.

    Args:
        base_url: e.g. 'https://api.openai.com/v1' or 'http://127.0.0.1:8000/v1'.
        model: the model name the server expects.
        api_key_env: environment variable holding the key; unset is fine for local servers.
        timeout: seconds per request (connect + read).
        max_retries: extra attempts after a timeout, connection error, 429 or 5xx.
        concurrency: requests in flight at once.
        temperature: 0 by default so answers are reproducible and cache keys meaningful.
        max_tokens: answer length cap (per call overridable in `complete_many`).
        backoff: first retry delay in seconds; doubles each attempt (capped at 30 s).
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 30,
                 max_retries: int = 3, concurrency: int = 8, temperature: float = 0.0, max_tokens: int = 256,
                 backoff: float = 0.5):
        if not base_url.startswith(("http://", "https://")):
            raise WhyrecError(f"base_url {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self.backend_id = f"openai:{self.base_url}"
        self.api_key_env = api_key_env
        self.timeout, self.max_retries, self.concurrency = timeout, max_retries, max(1, concurrency)
        self.temperature, self.max_tokens, self.backoff = temperature, max_tokens, backoff
        self.requests_sent = 0
        self.retries = 0
        self._lock = threading.Lock()

    def cache_params(self, max_tokens: int | None = None) -> dict:
        return {"temperature": self.temperature, "max_tokens": max_tokens or self.max_tokens}

    def complete(self, messages: Messages, max_tokens: int | None = None) -> str:
        payload = {"model": self.model, "messages": messages, **self.cache_params(max_tokens)}
        return _content_of(self._post_with_retries(json.dumps(payload).encode()))

    def iter_complete(self, batch: Sequence[Messages], max_tokens: int | None = None) -> Iterator[tuple[int, str]]:
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="whyrec-chat")
        try:
            # Submit lazily so a failure stops the run after at most `concurrency` extra requests.
            todo = iter(range(len(batch)))
            pending = {pool.submit(self.complete, batch[i], max_tokens): i for i in islice(todo, self.concurrency)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    yield i, fut.result()
                    nxt = next(todo, None)
                    if nxt is not None:
                        pending[pool.submit(self.complete, batch[nxt], max_tokens)] = nxt
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _post_with_retries(self, body: bytes) -> bytes:
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                return self._post_once(body)
            except _Transient as e:
                if attempt + 1 == attempts:
                    raise WhyrecError(
                        f"{self.url}: {e} (gave up after {attempts} attempts; check the server "
                        "or raise the timeout / max_retries)"
                    ) from None
                delay = e.retry_after if e.retry_after is not None else self.backoff * 2**attempt
                delay = min(delay, 30.0) * (1 + 0.1 * random.random())  # jitter de-synchronises threads
                with self._lock:
                    self.retries += 1
                log.debug("retrying %s in %.2f s: %s", self.url, delay, e)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _post_once(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with self._lock:
            self.requests_sent += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            raise self._http_error(e) from None
        except TimeoutError:
            raise _Transient(f"timed out after {self.timeout:g} s") from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, TimeoutError):
                raise _Transient(f"timed out after {self.timeout:g} s") from None
            raise _Transient(f"cannot reach the server ({e.reason})") from None
        except (http.client.HTTPException, ConnectionError) as e:
            raise _Transient(f"connection dropped ({type(e).__name__}: {e})") from None

    def _http_error(self, e: urllib.error.HTTPError) -> Exception:
        try:
            detail = _short(e.read().decode("utf-8", "replace"))
        except OSError:
            detail = ""
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:  # some servers echo the key back in error bodies; never let it reach logs
            detail = detail.replace(key, "***")
        if e.code == 429 or e.code >= 500:
            retry_after = e.headers.get("Retry-After") if e.headers else None
            try:
                wait_s = float(retry_after) if retry_after else None
            except ValueError:  # an HTTP date; fall back to exponential backoff
                wait_s = None
            return _Transient(f"HTTP {e.code}: {detail}", wait_s)
        hint = f"; is ${self.api_key_env} set to a valid key?" if e.code in (401, 403) else ""
        return WhyrecError(f"{self.url} refused the request: HTTP {e.code}: {detail}{hint}")


def _content_of(raw: bytes) -> str:
    """choices[0].message.content of a chat-completion reply, or a WhyrecError saying what came back."""
    text = raw.decode("utf-8", "replace")
    try:
        reply = json.loads(text)
    except json.JSONDecodeError:
        raise WhyrecError(f"the chat server sent a reply that is not JSON: {_short(text)!r}") from None
    try:
        choice = reply["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise WhyrecError(f"the chat server's reply has no choices[0].message.content: {_short(text)!r}") from None
    if content is None:  # e.g. a content filter fired; score it as an unparsable answer, don't stop the run
        log.warning("empty answer (finish_reason=%s)", choice.get("finish_reason"))
        return ""
    if not isinstance(content, str):
        raise WhyrecError(f"choices[0].message.content is not a string: {_short(text)!r}")
    return content


class ChatCache:
    """Answers in an SQLite file, keyed by sha256 of (backend, model, messages, params[, local weights
    identity]); thread-safe."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else cache_dir() / "chat_cache.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")  # readers in other runs don't block writers
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, backend TEXT, model TEXT,"
                " answer TEXT NOT NULL, created REAL)"
            )
            self._db.commit()
        except sqlite3.DatabaseError as e:
            raise WhyrecError(f"cannot open the chat cache {self.path} ({e}); delete it or pick another path") from None

    @staticmethod
    def key(client: ChatClient, messages: Messages, max_tokens: int | None = None) -> str:
        parts = [client.backend_id, client.model, messages, client.cache_params(max_tokens)]
        weights = getattr(client, "weights_identity", None)
        if weights is not None:  # a local model: its weights, not only its name (a server's model is its name)
            parts.append(weights())
        blob = json.dumps(parts, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
                part = list(keys[start:start + 500])
                marks = ",".join("?" * len(part))
                found.update(self._db.execute(f"SELECT key, answer FROM answers WHERE key IN ({marks})", part))
        hits = sum(k in found for k in keys)
        self.hits += hits
        self.misses += len(keys) - hits
        return found

    def put(self, key: str, answer: str, client: ChatClient | None = None) -> None:
        row = (key, getattr(client, "backend_id", None), getattr(client, "model", None), answer, time.time())
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?)", row)
            self._db.commit()  # one commit per answer: a crash loses at most the answer in flight

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ChatCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def complete_many(client: ChatClient, list_of_messages: Sequence[Messages], cache: ChatCache | None = None,
                  progress: bool = True, max_tokens: int | None = None, desc: str = "chat") -> list[str]:
    """Answer every conversation, reading and filling `cache`; identical requests are sent once.

    Answers are cached as they arrive, so an interrupted run resumes where it stopped.
    """
    from tqdm.auto import tqdm

    keys = [ChatCache.key(client, m, max_tokens) for m in list_of_messages]
    answers: dict[str, str] = cache.get_many(keys) if cache is not None else {}
    first_index: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k not in answers:
            first_index.setdefault(k, i)
    todo = list(first_index)  # unique missing keys, in input order
    copies = Counter(keys)
    done = len(keys) - sum(copies[k] for k in todo)
    with tqdm(total=len(keys), initial=done, disable=not progress, desc=desc) as bar:
        for j, answer in client.iter_complete([list_of_messages[first_index[k]] for k in todo], max_tokens):
            answers[todo[j]] = answer
            if cache is not None:
                cache.put(todo[j], answer, client)
            bar.update(copies[todo[j]])
    return [answers[k] for k in keys]
