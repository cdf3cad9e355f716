"""`whyrec serve`: validate the folder, load the model once, open the cache, run uvicorn."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from whyrec.config import GenerationConfig
from whyrec.utils import WhyrecError, cache_dir


def default_cache_path() -> Path:
    # Outside the artifact folder (which must stay exactly as trained); rows are keyed by model
    # revision, so one file serves every model on the machine.
    return cache_dir() / "serve" / "explanations.sqlite"


def build_app(run: str, device: str = "auto", generation: GenerationConfig | None = None,
              cache: str | None = "auto", settings=None):
    """The FastAPI app for `run`, ready for uvicorn or FastAPI's TestClient."""
    try:
        import fastapi  # noqa: F401
    except ImportError:
        raise WhyrecError("`whyrec serve` needs the serve extra: pip install 'whyrec[serve]'") from None
    from whyrec.serve.app import create_app
    from whyrec.serve.cache import ExplanationCache
    from whyrec.serve.load import load_served
    from whyrec.serve.settings import ServeSettings
    from whyrec.serve.validate import check_artifact

    settings = settings or ServeSettings()
    folder = check_artifact(run)
    gen = replace(generation or GenerationConfig(), batch_size=settings.max_batch)
    model = load_served(folder, device=device, generation=gen)
    store = ExplanationCache(None if cache in (None, "none") else default_cache_path() if cache == "auto" else cache)
    return create_app(model, store, settings)


def run_server(run: str, host: str, port: int, **kwargs) -> None:
    import uvicorn

    app = build_app(run, **kwargs)
    model = app.state.model
    info = model.info()
    print(f"whyrec serve: {info['method']} on {info['backbone']} ({info['n_users']} users, "
          f"{info['n_items']} items, revision {model.revision}); cache {app.state.cache.path or 'in memory'}; "
          f"page at http://{host}:{port}/ , API at /docs", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
