"""Serve recommendations with explanations: HTTP API (FastAPI), a one-file web page, an
explanation cache (SQLite) and a micro-batching queue in front of the LLM.

Install with `pip install whyrec[serve]`; start with `whyrec serve --run DIR`. Nothing here is
imported by `import whyrec` or `whyrec --help` (fastapi and torch load only when serving).
"""
