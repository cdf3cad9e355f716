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
import re
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tqdm.auto import tqdm

from whyrec.utils import WhyrecError, cache_dir

BASE_ENV = "WHYREC_DOWNLOAD_BASE"
CHUNK = 1 << 16
TIMEOUT = 60.0  # seconds per socket operation, not for the whole file: big files take hours
HAND_HINT = "download it by hand and pass --path"
# Failures of the network, not of the local disk (a full disk must not read "cannot reach").
_NETWORK_ERRORS = (ConnectionError, TimeoutError, ssl.SSLError, http.client.HTTPException, urllib.error.URLError)


@dataclass(frozen=True)
class RemoteFile:
    url: str
    sha256: str | None = None  # None: recorded in `<file>.sha256` on the first download
    size: int | None = None  # bytes, where known; shown by `list_sources()`

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    terms: str
    files: tuple[RemoteFile, ...]


# ---------------------------------------------------------------- catalogue

XREC_COMMIT = "79e2cd4"
_XREC = f"https://raw.githubusercontent.com/HKUDS/XRec/{XREC_COMMIT}/data"
_XREC_TERMS = "Apache-2.0 (HKUDS/XRec); the underlying reviews under their own terms"
# sha256 and sizes of the Amazon files were taken from ../shared/data/xrec-amazon, a copy of
# the same commit; Google and Yelp files have not been seen offline, so they are recorded.
_XREC_AMAZON_SHA = {
    "tst.pkl": ("a479a64745c0435ebab757fe5335e93c05e1731df1afa432286f29bbf9713485", 2695021),
    "tst_pred.pkl": ("366651098b1ce9ba5eeca007643319d1b9a457bed153816921145a6093091045", 958951),
    "tst_ref.pkl": ("4d0f3d829eadd84c55d31378abfb3c493cbc0dfea685fd3137817ff041fd43da", 876478),
    "para_dict.pickle": ("7b09b9409a4624a7224791026628b16ce139da42d812b3ada33614ef99cc7558", 2477772),
    "total_val.csv": ("cacbe8848e5e79c96f635e18cd1c6d7aa3d50c0dd8cf9b5efbdc0b968dabcc26", 871282),
    "total_tst.csv": ("5f9179f27680306d80745ef382b4f9ef71ab7759f83ac3a42eeb2b4c924ada0a", 871558),
}
# Which files each XRec dataset folder has at that commit (amazon has no total_trn.csv).
_XREC_FILES = {
    "amazon": tuple(_XREC_AMAZON_SHA),
    "google": ("tst.pkl", "tst_pred.pkl", "tst_ref.pkl", "total_trn.csv", "total_val.csv", "total_tst.csv"),
    "yelp": ("tst.pkl", "tst_pred.pkl", "tst_ref.pkl", "total_trn.csv", "total_val.csv", "total_tst.csv"),
}


def _xrec_source(ds: str) -> Source:
    pinned = _XREC_AMAZON_SHA if ds == "amazon" else {}
    files = tuple(RemoteFile(f"{_XREC}/{ds}/{f}", *pinned.get(f, (None, None))) for f in _XREC_FILES[ds])
    return Source(f"xrec-{ds}", f"XRec's {ds} test split, predictions and interaction files", _XREC_TERMS, files)


_ML_TERMS = "GroupLens MovieLens terms: research use, no redistribution, cite Harper & Konstan 2015"
SOURCES: dict[str, Source] = {
    **{f"xrec-{ds}": _xrec_source(ds) for ds in _XREC_FILES},
    "ml-100k": Source("ml-100k", "MovieLens 100K ratings, users and movies (zip)", _ML_TERMS,
                      (RemoteFile("https://files.grouplens.org/datasets/movielens/ml-100k.zip"),)),
    "ml-1m": Source("ml-1m", "MovieLens 1M ratings, users and movies (zip)", _ML_TERMS,
                    (RemoteFile("https://files.grouplens.org/datasets/movielens/ml-1m.zip"),)),
}

# Category sources: the name is `amazon-2014:CATEGORY`; `{c}` is the category as the site spells it.
CATEGORY_URLS = {
    "amazon-2014": "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_{c}_5.json.gz",
    "amazon-2018": "https://jmcauley.ucsd.edu/data/amazon_v2/categoryFilesSmall/{c}_5.json.gz",
}
_AMAZON_TERMS = "McAuley lab Amazon review data: research use; cite the release's paper"
_CATEGORY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def resolve(name: str) -> Source:
    """The catalogue entry for `name` (`ml-100k`, `xrec-amazon`, `amazon-2014:Beauty` ...)."""
    if name in SOURCES:
        return SOURCES[name]
    family, _, category = name.partition(":")
    if family in CATEGORY_URLS:
        if not _CATEGORY.fullmatch(category):
            raise WhyrecError(f"{family} needs a category as the site spells it, e.g. "
                              f"{family}:Musical_Instruments (got {name!r})")
        url = CATEGORY_URLS[family].format(c=category)
        return Source(name, f"Amazon {family[-4:]} 5-core reviews, {category}", _AMAZON_TERMS, (RemoteFile(url),))
    known = ", ".join([*SOURCES, *(f"{f}:CATEGORY" for f in CATEGORY_URLS)])
    raise WhyrecError(f"unknown download source {name!r}; known: {known}, or an http(s) URL")


def list_sources() -> list[dict]:
    """One JSON-ready row per catalogue entry, for `whyrec data download --list`."""
    rows = [_describe(s) for s in SOURCES.values()]
    for family, url in CATEGORY_URLS.items():
        rows.append({"name": f"{family}:CATEGORY", "description": f"Amazon {family[-4:]} 5-core category file",
                     "terms": _AMAZON_TERMS, "files": [{"url": url.format(c="{CATEGORY}"), "sha256": None}]})
    return rows


def _describe(source: Source) -> dict:
    files = [{"url": f.url, "sha256": f.sha256, "size": f.size} for f in source.files]
    return {"name": source.name, "description": source.description, "terms": source.terms, "files": files}


# ---------------------------------------------------------------- download


def download(name_or_url: str, dest_dir: str | os.PathLike | None = None, sha256: str | None = None,
             progress: bool = True, base_url: str | None = None, retries: int = 3, extract: bool = False) -> Path:
    """Fetch a catalogue source or a URL into `dest_dir` (default `cache_dir()/downloads`).

    Args:
        name_or_url: a name from `list_sources()` or an http(s) URL.
        dest_dir: folder to write into; a named source gets its own sub-folder.
        sha256: expected checksum (single-file sources and URLs); overrides the catalogue's.
        progress: show a tqdm bar in bytes.
        base_url: replaces scheme and host of every URL (default: $WHYREC_DOWNLOAD_BASE).
        retries: how often a dropped connection is resumed before giving up.
        extract: unpack downloaded .zip files (MovieLens) next to them and return the folder.

    Returns:
        The file (or its unpacked folder), or the folder for sources with several files.
    """
    root = Path(dest_dir) if dest_dir is not None else cache_dir() / "downloads"
    if name_or_url.startswith(("http://", "https://")):
        if not RemoteFile(name_or_url).name:
            raise WhyrecError(f"{name_or_url} names no file; give the URL of the file itself")
        files, folder = (RemoteFile(name_or_url),), root
    else:
        source = resolve(name_or_url)
        files, folder = source.files, root / source.name.replace(":", "-")
    if sha256 is not None:
        if len(files) != 1:
            raise WhyrecError(f"{name_or_url} has {len(files)} files; --sha256 applies to one-file sources")
        files = (RemoteFile(files[0].url, sha256.lower()),)
    base = base_url if base_url is not None else os.environ.get(BASE_ENV) or None
    paths = [fetch(f, folder, base, progress, retries) for f in files]
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
        with part.open("ab" if have else "wb") as out, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, desc=part.name[:-5], disable=not progress,
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
