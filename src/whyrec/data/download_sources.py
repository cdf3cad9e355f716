"""The catalogue of public sources `whyrec data download` knows, with their URLs, checksums and terms.

A source is a list of files fetched into one folder named after it. A bundle (`test-data`)
is a list of sources, each fetched into its own sub-folder, so one command rebuilds a whole
data folder such as the one the test suite reads (`../shared/data`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from whyrec.utils import WhyrecError


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
    parts: tuple[Source, ...] = ()  # a bundle's sources; `files` is then all of theirs

    @property
    def folder(self) -> str:
        """Sub-folder of the download root this source's files go to."""
        return self.name.replace(":", "-")


def bundle(name: str, description: str, parts: tuple[Source, ...]) -> Source:
    terms = "each part under its own terms: " + "; ".join(f"{p.name}: {p.terms}" for p in parts)
    return Source(name, description, terms, tuple(f for p in parts for f in p.files), parts)


def _github(repo: str, commit: str, path: str, sha256: str, size: int) -> RemoteFile:
    return RemoteFile(f"https://raw.githubusercontent.com/{repo}/{commit}/{path}", sha256, size)


# ---------------------------------------------------------------- XRec

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


# ---------------------------------------------------------------- files the tests read
# Pinned from ../shared/data (sha256sum), whose README names where each copy came from; the
# sources' folder names are that folder's sub-folders, which is what makes `test-data` rebuild it.

_ML_TERMS = "GroupLens MovieLens terms: research use, no redistribution, cite Harper & Konstan 2015"
_AMAZON_TERMS = "McAuley lab Amazon review data: research use; cite the release's paper"

# The copy the PEPLER/Sentires pipeline ships as its example input (lileipisces/Sentires-Guide);
# that is where ../shared/data's copy came from, so its bytes are known, while the SNAP original
# (`amazon-2014:Musical_Instruments`) has never been seen offline and stays unpinned.
AMAZON_MI = Source(
    "amazon-musical-instruments",
    "Amazon 2014 5-core reviews, Musical_Instruments (10,261 lines), Sentires-Guide's example input",
    f"{_AMAZON_TERMS} (McAuley et al., SIGIR 2015); copy in github lileipisces/Sentires-Guide",
    (_github("lileipisces/Sentires-Guide", "6f2e52c1ba060d350aad6164752d9b8bded8cfd0",
             "lei/input/reviews_Musical_Instruments_5.json.gz",
             "03f9cc27ae13a454cb4ea6cb620fb10546cc1194ef921441d1c5f34addff2748", 2460495),))

RECALPACA_ML100K = Source(
    "recalpaca-ml100k",
    "RecAlpaca's ML-100K test set: 200 users, 20 candidates each, RecAlpaca's own generations",
    f"github Allenpai1/RecAlpaca @d797f07 (no licence file); {_ML_TERMS}",
    (_github("Allenpai1/RecAlpaca", "d797f07", "testSet/ML100kEvaluationRecAlpaca.json",
             "6fbe71beb6a5c50cc03c14100ff3aa6d935f69a512277133f8fa5aa375331e8d", 1667230),))

# No commit of this repository is pinned (none seen offline holds these exact bytes): HEAD is
# the default branch, and the sha256 pin refuses any other content it may serve later.
_EDGERUNNERS = "AGI-Edgerunners/RecAlpaca"
ML100K_INSTRUCTIONS = Source(
    "ml100k-instructions",
    "4,715 Alpaca-format ML-100K recommendation instructions (gpt-3.5 reasons) and 943 users' liked titles",
    f"github {_EDGERUNNERS} (no licence file; cite the repository, as its README asks); {_ML_TERMS}",
    (_github(_EDGERUNNERS, "HEAD", "ml_100k_instruct_data.json",
             "c5fddb76babbd933d79535cb1ff4462c553e6a1f43fe012cb59d2a3f9665b484", 3517998),
     _github(_EDGERUNNERS, "HEAD", "ml_100k.json",
             "2062f9c75c923223736097a7a3f8131902c023f5bee9b671324743c72cc9925c", 764666)))

SOURCES: dict[str, Source] = {
    **{f"xrec-{ds}": _xrec_source(ds) for ds in _XREC_FILES},
    "ml-100k": Source("ml-100k", "MovieLens 100K ratings, users and movies (zip)", _ML_TERMS,
                      (RemoteFile("https://files.grouplens.org/datasets/movielens/ml-100k.zip"),)),
    "ml-1m": Source("ml-1m", "MovieLens 1M ratings, users and movies (zip)", _ML_TERMS,
                    (RemoteFile("https://files.grouplens.org/datasets/movielens/ml-1m.zip"),)),
    **{s.name: s for s in (AMAZON_MI, RECALPACA_ML100K, ML100K_INSTRUCTIONS)},
}
# The suite's real-data tests read these folders (tests/conftest.py `shared_data`);
# ml100k-instructions is read by benchmarks/method_memory.py. PEPLER's logs are only quoted by
# METHODS.md, no test opens them, so they are left out.
SOURCES["test-data"] = bundle(
    "test-data", "every file the test suite's real-data tests read, in ../shared/data's layout "
    "(use --out ../shared/data or set WHYREC_SHARED_DATA to the folder)",
    tuple(SOURCES[n] for n in ("xrec-amazon", "amazon-musical-instruments", "recalpaca-ml100k",
                               "ml100k-instructions")))

# Category sources: the name is `amazon-2014:CATEGORY`; `{c}` is the category as the site spells it.
CATEGORY_URLS = {
    "amazon-2014": "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_{c}_5.json.gz",
    "amazon-2018": "https://jmcauley.ucsd.edu/data/amazon_v2/categoryFilesSmall/{c}_5.json.gz",
}
_CATEGORY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def resolve(name: str) -> Source:
    """The catalogue entry for `name` (`ml-100k`, `xrec-amazon`, `test-data`, `amazon-2014:Beauty` ...)."""
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
    row = {"name": source.name, "description": source.description, "terms": source.terms}
    if source.parts:
        row["parts"] = [p.name for p in source.parts]
    groups = source.parts or (source,)
    row["files"] = [{"url": f.url, "sha256": f.sha256, "size": f.size, "folder": g.folder}
                    for g in groups for f in g.files]
    return row
