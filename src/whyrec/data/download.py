"""Downloads of the public datasets whyrec reads, with checksums, resume and a cache.

Sources (see `list_sources()`):
- XRec's data files (Ma, Ren, Xia and Huang, "XRec: Large Language Models for Explainable
  Recommendation", EMNLP 2024 Findings), github HKUDS/XRec at commit 79e2cd4, Apache-2.0;
  the underlying Amazon, Google Local and Yelp reviews stay under their own terms.
- MovieLens 100K and 1M (Harper and Konstan, TiiS 2015), GroupLens: research use, no
  redistribution, cite the paper.
- Amazon review 5-core category files: the 2014 release (McAuley et al., SIGIR 2015) and the
  2018 release (Ni, Li and McAuley, EMNLP 2019), research use; the user names the category:
  `amazon-2014:Musical_Instruments`, `amazon-2018:Musical_Instruments`.
- `test-data`: every file the test suite's real-data tests read (XRec Amazon, RecAlpaca's test
  set, the ML-100K instruction data, Sentires-Guide's musical-instruments reviews), each part in
  its own sub-folder, so `--out ../shared/data` rebuilds the folder the tests look for.
The catalogue (URLs, pinned checksums, terms) lives in `download_sources.py`.

A file is streamed to `<file>.part` (continued with an HTTP Range request when the server
answers 206), checked against its sha256 and renamed into place. Where no checksum is pinned
here, the first download records the one it observed in `<file>.sha256`, and a later
re-download is held to it. A cached file with its `.sha256` beside it is returned without
touching the network. `WHYREC_DOWNLOAD_BASE` (or `base_url=`) replaces scheme and host of
every URL, so a mirror or a test server on 127.0.0.1 serves the same relative paths.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import whyrec.progress as P
from whyrec.data.download_sources import (  # noqa: F401 (re-exported: the catalogue is part of this API)
    CATEGORY_URLS,
    SOURCES,
    RemoteFile,
    Source,
    list_sources,
    resolve,
)
from whyrec.utils import WhyrecError, cache_dir

BASE_ENV = "WHYREC_DOWNLOAD_BASE"
CHUNK = 1 << 16
TIMEOUT = 60.0  # seconds per socket operation, not for the whole file: big files take hours
# A download's log line comes more often than a training loop's: a stalled transfer should show within seconds.
LOG_INTERVAL_S = 5.0
HAND_HINT = "download it by hand and pass --path"
# Failures of the network, not of the local disk (a full disk must not read "cannot reach").
_NETWORK_ERRORS = (ConnectionError, TimeoutError, ssl.SSLError, http.client.HTTPException, urllib.error.URLError)


# ---------------------------------------------------------------- download


def download(name_or_url: str, dest_dir: str | os.PathLike | None = None, sha256: str | None = None,
             progress: bool = True, base_url: str | None = None, retries: int = 3, extract: bool = False) -> Path:
    """Fetch a catalogue source or a URL into `dest_dir` (default `cache_dir()/downloads`).

    Args:
        name_or_url: a name from `list_sources()` or an http(s) URL.
        dest_dir: folder to write into; a named source gets its own sub-folder (a bundle such
            as `test-data`: one per part).
        sha256: expected checksum (single-file sources and URLs); overrides the catalogue's.
        progress: show progress in bytes (a tqdm bar on a terminal; in a log, a line every few
            seconds with MB done / total, MB/s and ETA).
        base_url: replaces scheme and host of every URL (default: $WHYREC_DOWNLOAD_BASE).
        retries: how often a dropped connection is resumed before giving up.
        extract: unpack downloaded .zip files (MovieLens) next to them and return the folder.

    Returns:
        The file (or its unpacked folder), or the folder for sources with several files
        (`dest_dir` itself for a bundle).
    """
    root = Path(dest_dir) if dest_dir is not None else cache_dir() / "downloads"
    if name_or_url.startswith(("http://", "https://")):
        if not RemoteFile(name_or_url).name:
            raise WhyrecError(f"{name_or_url} names no file; give the URL of the file itself")
        jobs, folder = [(RemoteFile(name_or_url), root)], root
    else:
        source = resolve(name_or_url)
        # a bundle's parts each keep their own sub-folder, so the bundle's result is the root
        jobs = [(f, root / s.folder) for s in source.parts or (source,) for f in s.files]
        folder = root if source.parts else root / source.folder
    if sha256 is not None:
        if len(jobs) != 1:
            raise WhyrecError(f"{name_or_url} has {len(jobs)} files; --sha256 applies to one-file sources")
        jobs = [(RemoteFile(jobs[0][0].url, sha256.lower()), jobs[0][1])]
    base = base_url if base_url is not None else os.environ.get(BASE_ENV) or None
    paths = [fetch(f, where, base, progress, retries) for f, where in jobs]
    if extract:
        paths = [extract_zip(p) if p.suffix == ".zip" else p for p in paths]
    return paths[0] if len(paths) == 1 else folder


def extract_zip(path: Path) -> Path:
    """Unpack `path` into a folder beside it (named after the archive) and return that folder.

    Members that would land outside the folder (absolute paths, `..`) are refused, and the
    folder appears only once everything is unpacked, so a kill never leaves half an archive.
    """
    import shutil
    import tempfile
    import zipfile

    target = path.with_suffix("")
    if target.is_dir():
        return target
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise WhyrecError(f"{path} is not a valid zip archive; delete it and download again") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=path.parent))
    try:
        with archive:
            for member in archive.namelist():
                dest = (tmp / member).resolve()
                if not dest.is_relative_to(tmp.resolve()):
                    raise WhyrecError(f"{path}: member {member!r} would unpack outside the folder; not extracting")
            archive.extractall(tmp)
        # GroupLens zips hold one top folder (ml-100k/); unwrap it so the result is that folder.
        inner = list(tmp.iterdir())
        os.replace(inner[0] if len(inner) == 1 and inner[0].is_dir() else tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def fetch(remote: RemoteFile, folder: Path, base_url: str | None = None, progress: bool = True,
          retries: int = 3) -> Path:
    """One file: cached if verified before, else streamed, resumed on drops, verified, renamed."""
    path = folder / remote.name
    stamp = path.with_name(path.name + ".sha256")
    recorded = _read_stamp(stamp)
    if path.is_file() and recorded and remote.sha256 in (None, recorded):
        return path  # verified when it was written: re-hashing multi-GB files on every run costs minutes
    expected = remote.sha256 or recorded
    if path.is_file():  # put here by hand or by an older run: verify instead of re-fetching
        return _stamp(path, stamp, _verify(path, expected, remote.url, delete=False))
    url = rebase(remote.url, base_url)
    part = path.with_name(path.name + ".part")
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        try:
            _stream(url, part, progress)
            break
        except _NETWORK_ERRORS as e:
            # URLError: refused, unknown host or an HTTP error status, which a retry will not fix
            if isinstance(e, urllib.error.URLError) or attempt == retries:
                raise _network_error(e, url) from None
    digest = _verify(part, expected, remote.url, delete=True)
    os.replace(part, path)  # same folder, so the rename is atomic: no half file under the real name
    return _stamp(path, stamp, digest)


def rebase(url: str, base_url: str | None) -> str:
    """`url` with scheme and host replaced by `base_url` (which may carry a path prefix)."""
    if not base_url:
        return url
    parts = urlsplit(url)
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    return base_url.rstrip("/") + rest


def _stream(url: str, part: Path, progress: bool) -> None:
    """Append the rest of `url` to `part`, asking for the missing bytes only."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "whyrec-download"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:
            raise
        part.unlink()  # the server rejects our offset: the .part is stale, so start over
        return _stream(url, part, progress)
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored Range and sends everything: overwrite, not append
        elif have and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            part.unlink()  # bytes from another offset would splice the file: start over on retry
            raise http.client.HTTPException(f"unexpected Content-Range from {url}")
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else None
        with part.open("ab" if have else "wb") as out, P.progress(
            total=total, initial=have, unit="B", unit_scale=True, desc=part.name[:-5], enabled=progress,
            interval=min(P.INTERVAL_S, LOG_INTERVAL_S),
        ) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size < total:
        raise http.client.IncompleteRead(b"", total - part.stat().st_size)


def _network_error(e: BaseException, url: str) -> WhyrecError:
    host = urlsplit(url).netloc
    if isinstance(e, urllib.error.HTTPError):
        what = "not found" if e.code == 404 else e.reason
        return WhyrecError(f"{url} answered HTTP {e.code} ({what}); check the name, or {HAND_HINT}")
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    return WhyrecError(f"cannot reach {host} ({reason}); {HAND_HINT} (re-running resumes a partial download)")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, expected: str | None, url: str, delete: bool) -> str:
    """The file's sha256, after checking it against `expected` where one is known."""
    observed = sha256_of(path)
    if expected is not None and observed != expected:
        if delete:
            path.unlink()  # a corrupt .part must not be resumed from
        action = "deleted the download, re-run to retry" if delete else f"delete {path} and re-run"
        raise WhyrecError(f"checksum mismatch for {url}: expected sha256 {expected}, observed {observed}; {action}")
    return observed


def _read_stamp(stamp: Path) -> str | None:
    return stamp.read_text().split()[0] if stamp.is_file() else None


def _stamp(path: Path, stamp: Path, digest: str) -> Path:
    """Record the verified sha256 in `sha256sum` format, so `sha256sum -c` can check it too."""
    stamp.write_text(f"{digest}  {path.name}\n")
    return path
