"""The HTTP API (FastAPI): recommendations, explanations, search, model info and the web page.

Requests are validated by pydantic (lengths, ranges, types) before they touch the model;
unknown ids are 404s naming the id. Explanations come from the SQLite cache when present and
otherwise from the batcher, which writes them to the cache as soon as they are generated.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from whyrec.methods.catalog import recommend_for
from whyrec.serve.batcher import Batcher
from whyrec.serve.cache import ExplanationCache
from whyrec.serve.continuous import ContinuousBatcher
from whyrec.serve.errors import BodyLimit, install_error_handlers
from whyrec.serve.model import Pair, ServedModel, Unsupported, cold_key
from whyrec.serve.settings import ServeSettings

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
PathId = Annotated[str, Path(min_length=1, max_length=128)]
K = Annotated[int, Query(ge=1, le=100, description="number of items")]


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: Id | None = Field(None, description="a known user id")
    liked: list[Id] | None = Field(None, min_length=1, max_length=200, description="cold start: items the user liked")
    item: Id


class ColdStartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    liked: list[Id] = Field(min_length=1, max_length=200, description="item ids the new user liked")
    k: int = Field(5, ge=1, le=100)
    explain: bool = False


# An absolute POSIX or Windows path: a whole string, inside parentheses (may hold spaces, as in
# dataset_label's "ml-100k (/data/x)"), or a word elsewhere (not "user/item", not a URL's "//host").
_ROOT = r"(?:/|[A-Za-z]:[\\/])"
_ABSOLUTE_PATH = re.compile(rf"^{_ROOT}.*$|(?<=\(){_ROOT}[^()]*(?=\))|(?<![\w:/.~-]){_ROOT}[^\s()\[\]{{}}'\",;]+",
                            re.DOTALL)


def _last_name(match: re.Match) -> str:
    return re.split(r"[\\/]", match.group().rstrip("\\/"))[-1]


def without_absolute_paths(value):
    """`value` with every absolute path in its strings cut to the last name: /info is public, the
    server's folder layout (user names, mount points) is not."""
    if isinstance(value, str):
        return _ABSOLUTE_PATH.sub(_last_name, value)
    if isinstance(value, dict):
        return {k: without_absolute_paths(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_absolute_paths(v) for v in value]
    return value


def create_app(model: ServedModel, cache: ExplanationCache, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()

    catalog = model.catalog

    def generate(pairs: list[Pair]) -> list:  # the batcher's worker thread
        texts = model.explain(pairs)  # an Unsupported in place of a text: that pair's request gets 409
        cache.put_many({(p.user, p.item): t for p, t in zip(pairs, texts) if isinstance(t, str)}, model.revision)
        return texts

    stream = getattr(model, "explain_stream", None) if settings.continuous else None
    if stream is not None:  # the model's decoder takes requests mid-decode: continuous batching

        def explain_stream(pull, deliver, on_prefill):  # the batcher's worker thread
            def answer(key, result):
                if isinstance(result, str):
                    cache.put_many({key: result}, model.revision)
                deliver(key, result)

            stream(pull, answer, on_prefill)

        batcher = ContinuousBatcher(explain_stream, settings.max_queue, settings.timeout_s)
    else:
        batcher = Batcher(generate, settings.max_batch, settings.max_wait_ms, settings.max_queue, settings.timeout_s)

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await batcher.stop()

    # docs_url=None: FastAPI's /docs loads Swagger UI from a CDN and renders nothing offline; our
    # /docs is a local page listing the operations from /openapi.json (static/docs.html).
    app = FastAPI(title="whyrec", version=model.revision, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Recommendations with natural-language explanations from a whyrec explainer.")
    app.state.model, app.state.cache, app.state.batcher = model, cache, batcher
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, read_timeout_s=settings.read_timeout_s)
    install_error_handlers(app)

    def known_user(user: str) -> str:
        if not catalog.has_user(user):
            raise HTTPException(404, f"unknown user {user[:64]!r}: this model knows {len(catalog.users)} users; "
                                     "search them with GET /users?q=")
        return user

    def known_items(items: list[str]) -> list[str]:
        bad = [i for i in items if not catalog.has_item(i)]
        if bad:
            raise HTTPException(404, f"unknown item {bad[0][:64]!r}: this model knows {len(catalog.items)} items; "
                                     "search them with GET /items?q=")
        return items

    async def explain_pairs(pairs: list[Pair]) -> dict[tuple[str, str], tuple[str, bool]]:
        """(user, item) -> (text, cached); misses go through the batcher."""
        found = cache.get_many([(p.user, p.item) for p in pairs], model.revision)
        out = {key: (text, True) for key, text in found.items()}
        missing = {(p.user, p.item): p for p in pairs if (p.user, p.item) not in found}
        if missing:
            out.update({key: (text, False) for key, text in (await batcher.submit(missing)).items()})
        return out

    async def with_explanations(recs: list[dict], user: str, liked: tuple = ()) -> list[dict]:
        got = await explain_pairs([Pair(user, r["item"], liked) for r in recs if "explanation" not in r])
        return [r if "explanation" in r else {**r, "explanation": got[(user, r["item"])][0],
                                              "cached": got[(user, r["item"])][1]} for r in recs]

    async def ranked(user: str, k: int, explain: bool, include_held_out: bool = False) -> list[dict]:
        # In a thread: RecAlpaca's ranking is an LLM generation, and the event loop must keep answering.
        recs = await asyncio.to_thread(recommend_for, model, user, k, "train" if include_held_out else "all")
        given = {(user, r["item"]): r["explanation"] for r in recs if "explanation" in r}
        if given:  # explanations that came with the ranking (RecAlpaca's reasons): POST /explain finds them
            cache.put_many(given, model.revision)
        if explain:
            return await with_explanations([{**r, "cached": False} if "explanation" in r else r for r in recs], user)
        return [{key: v for key, v in r.items() if key != "explanation"} for r in recs]

    def no_cold_start() -> None:
        if not model.cold_start:
            raise Unsupported(f"{model.info()['method']} knows only its trained users; cold start (items a new "
                              "user liked) is served for XRec runs")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return (files("whyrec.serve") / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs():
        return (files("whyrec.serve") / "static" / "docs.html").read_text(encoding="utf-8")

    @app.get("/health", summary="liveness: the process answers")
    def health():
        return {"status": "ok"}

    @app.get("/ready", summary="readiness: model loaded and the generation worker running")
    def ready():
        if not batcher.running:
            raise HTTPException(503, "the generation worker is not running")
        sizes = batcher.batch_sizes
        return {"ready": True, "revision": model.revision, "queue_waiting": batcher.waiting,
                "queue_limit": settings.max_queue, "generate_calls": batcher.calls,
                "mean_batch": round(sum(sizes) / len(sizes), 2) if sizes else None,
                "cache": {"entries": cache.count(model.revision), "hits": cache.hits, "misses": cache.misses}}

    @app.get("/info", summary="model: method, backbone, dataset, training config")
    def info():
        return without_absolute_paths(model.info())

    @app.get("/users", summary="search users by id or profile text")
    def users(q: Annotated[str, Query(max_length=200)] = "", limit: Annotated[int, Query(ge=1, le=100)] = 20):
        return {"users": [{"user": u, "profile": catalog.profile(u), "n_history": len(catalog.history(u))}
                          for u in catalog.search_users(q, limit)]}

    @app.get("/users/{user_id}", summary="a user's profile and training history")
    def user(user_id: PathId):
        known_user(user_id)
        return {"user": user_id, "profile": catalog.profile(user_id),
                "history": [{"item": i, "title": catalog.title(i)} for i in catalog.history(user_id)]}

    @app.get("/users/{user_id}/recommendations", summary="top-k items, optionally each with an explanation")
    async def recommendations(user_id: PathId, k: K = 5, explain: bool = False, include_held_out: Annotated[
            bool, Query(description="keep the user's valid/test items (evaluation); default: every item "
                                    "the user interacted with is left out")] = False):
        recs = await ranked(known_user(user_id), k, explain, include_held_out)
        return {"user": user_id, "k": k, "recommendations": recs}

    @app.post("/recommendations", summary="cold start: top-k for a new user given the items they liked")
    async def cold_recommendations(req: ColdStartRequest):
        liked = tuple(dict.fromkeys(known_items(req.liked)))
        no_cold_start()
        recs = model.recommend_cold(list(liked), req.k)
        if req.explain:
            recs = await with_explanations(recs, cold_key(list(liked)), liked)
        return {"liked": list(liked), "k": req.k, "recommendations": recs}

    @app.post("/explain", summary="why would this user enjoy this item?")
    async def explain(req: ExplainRequest):
        if (req.user is None) == (req.liked is None):
            raise HTTPException(422, "give exactly one of 'user' (a known id) or 'liked' (items, cold start)")
        known_items([req.item] + (req.liked or []))
        if req.liked is not None:
            no_cold_start()
        liked = tuple(dict.fromkeys(req.liked or ()))
        user_key = known_user(req.user) if req.user is not None else cold_key(list(liked))
        text, cached = (await explain_pairs([Pair(user_key, req.item, liked)]))[(user_key, req.item)]
        return {"user": req.user, "item": req.item, "title": catalog.title(req.item), "explanation": text,
                "cached": cached, "revision": model.revision}

    @app.get("/items", summary="search items by title or id")
    def items(q: Annotated[str, Query(max_length=200)] = "", limit: Annotated[int, Query(ge=1, le=100)] = 20):
        return {"items": [{"item": i, "title": catalog.title(i)} for i in catalog.search_items(q, limit)]}

    @app.get("/items/{item_id}", summary="an item's title and profile")
    def item(item_id: PathId):
        known_items([item_id])
        return {"item": item_id, "title": catalog.title(item_id), "profile": catalog.item_profile(item_id)}

    return app
