"""OS errors in words for `whyrec: error:` lines: the OS's reason, then what to do about it."""

from __future__ import annotations

import errno
import re

_OS_FIXES = {  # what to do about it (the OS's own reason is printed before)
    **dict.fromkeys((errno.EACCES, errno.EPERM), "check its permissions or choose another location"),
    errno.EEXIST: "remove it or choose another path",
    errno.EISDIR: "pass a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.ENOENT: "check the path",
    **dict.fromkeys((errno.ENOSPC, errno.EDQUOT), "free some space or write somewhere else"),
    errno.EFBIG: "the file outgrew the size limit (ulimit -f) or the file system's; write somewhere else",
    errno.EROFS: "write somewhere else",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.ENOTEMPTY: "empty it or choose another path",
    errno.EMFILE: "raise the open-file limit (ulimit -n)",
    errno.EADDRINUSE: "another program holds the port; choose another --port",
    errno.EADDRNOTAVAIL: "the address is not on this machine; use --host 127.0.0.1 or one of its addresses",
}


def _errno(e: OSError) -> int | None:
    """The errno, also when a library only wrote it into the message (pyarrow: '[errno 27] File too large')."""
    found = re.search(r"\[errno (\d+)\]", str(e), re.I)
    return e.errno if e.errno is not None else int(found.group(1)) if found else None


def os_reason(e: OSError) -> str:
    """'<reason>; <fix>' of an OSError, without its path."""
    reason = (e.strerror or _one_line(str(e)) or type(e).__name__).rstrip(".")
    fix = _OS_FIXES.get(_errno(e))
    return f"{reason[:1].lower()}{reason[1:]}; {fix}" if fix else reason


def os_error_line(e: OSError, argv: list[str] = ()) -> str:
    """'<path>: <reason>; <fix>' (the path first, as the OS reports it)."""
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    if not paths and _errno(e) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) and "--out" in argv[:-1]:
        paths = [f"writing --out {argv[argv.index('--out') + 1]}"]  # a full disk reports no file name
    where = " -> ".join(paths)
    return f"{where}: {os_reason(e)}" if where else os_reason(e)


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
