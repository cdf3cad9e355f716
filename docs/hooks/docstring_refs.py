"""MkDocs hook: docstring text that only looks like a cross-reference does not fail the build.

Markdown reads `meta["a"]["b"]` in a docstring as the reference link `[text][id]`, and mkdocs-autorefs
then warns that the target `"b"` does not exist, which `mkdocs build --strict` turns into a failed
build. whyrec's docstrings are prose and never use autorefs links on purpose, so such warnings are
logged at INFO instead, but only when they come from a Python source file (the warning names it).
Broken links and anchors in the documentation pages themselves are still warnings and still fail
the build.
"""

from __future__ import annotations

import logging
import re

_FROM_PYTHON_SOURCE = re.compile(r"from \S+\.py:\d+: \(")


class _DocstringRefs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if (record.levelno == logging.WARNING and "Could not find cross-reference target" in msg
                and _FROM_PYTHON_SOURCE.search(msg)):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = f"docstring text read as a reference (not a docs link): {msg}", ()
        return True


_FILTER = _DocstringRefs()


def on_startup(command, dirty):  # noqa: ARG001  (MkDocs hook signature)
    for name in ("mkdocs.plugins.mkdocs_autorefs._internal.plugin", "mkdocs.plugins.mkdocs_autorefs.plugin",
                 "mkdocs.plugins.mkdocs_autorefs"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
