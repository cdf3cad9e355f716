"""A method that exists only in the tests: popularity recommender, template explanations.

It is the "add a method" walkthrough of the README in runnable form: a config dataclass, a
method object (train/check/load) and a served model (recommend/explain/info over a Catalog).
Registering it (`METHODS.temporary("toy", ToyMethod())`) is all it takes for `whyrec train
explainer`, `recommend`, `explain`, `evaluate --run`, `benchmark explain`, `whyrec.load_run` and
`whyrec serve` to run it: no library file names it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from whyrec.config import GenerationConfig
from whyrec.methods.catalog import Catalog, Pair, Unsupported
from whyrec.utils import WhyrecError


@dataclass
class ToyConfig:
    template: str = "{title} is popular: {count} people liked it."
    """Explanation template ({title}, {item}, {count})."""


class ToyModel:
    """What `ToyMethod.load` returns: the served-model protocol (whyrec.methods.catalog.ServedModel)."""

    cold_start = False

    def __init__(self, folder: Path, generation: GenerationConfig | None = None):
        state = json.loads((folder / "popularity.json").read_text())
        self.folder, self.gen, self.counts, self.seen = folder, generation or GenerationConfig(), state["counts"], state["seen"]
        self.config = ToyConfig(**json.loads((folder / "config.json").read_text())["toy"])
        self.catalog = Catalog(list(self.seen), list(self.counts), state["titles"])
        self.revision = "toy-" + str(sum(self.counts.values()))

    def info(self) -> dict:
        return {"method": "toy", "backbone": None, "dataset": None, "revision": self.revision,
                "n_users": len(self.catalog.users), "n_items": len(self.catalog.items),
                "recommends": "most-liked items first", "explains": "a template", "cold_start": False,
                "generation": dataclasses.asdict(self.gen), "folder": str(self.folder)}

    def recommend(self, user: str, k: int) -> list[dict]:
        ranked = [i for i in sorted(self.counts, key=lambda i: (-self.counts[i], i)) if i not in self.seen[user]]
        return self.catalog.rows(ranked[:k], [float(self.counts[i]) for i in ranked[:k]])

    def recommend_cold(self, liked: list[str], k: int) -> list[dict]:
        raise Unsupported("the toy method has no cold start")

    def explain(self, pairs: list[Pair]) -> list[str]:
        # max_new_tokens caps the words, so a changed GenerationConfig visibly changes the text
        return [" ".join(self.config.template.format(title=self.catalog.title(p.item), item=p.item,
                                                     count=self.counts.get(p.item, 0)).split()[:self.gen.max_new_tokens])
                for p in pairs]


class ToyMethod:
    """Most popular items first; the explanation fills a template with the item's title and count."""

    name = "toy"
    config_class = ToyConfig
    needs_encoder = None

    def train(self, data, out, *, encoder=None, model, train, config, resume=True, overwrite=False) -> dict:
        from whyrec.data import schema as S
        from whyrec.data.dataset import RecDataset

        ds = RecDataset.load(data)
        inter = ds.interactions[ds.interactions[S.SPLIT] == S.TRAIN]
        counts = inter[S.ITEM].astype(str).value_counts().to_dict()
        for item in ds.interactions[S.ITEM].astype(str).unique():
            counts.setdefault(item, 0)
        seen = inter.groupby(inter[S.USER].astype(str))[S.ITEM].apply(lambda s: sorted(s.astype(str))).to_dict()
        seen.update({u: [] for u in ds.interactions[S.USER].astype(str).unique() if u not in seen})
        titles = {}
        if ds.items is not None and S.TITLE in ds.items:
            titles = dict(zip(ds.items[S.ITEM].astype(str), ds.items[S.TITLE].fillna("").astype(str)))
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, "popularity.json").write_text(json.dumps({"counts": counts, "seen": seen, "titles": titles}))
        Path(out, "config.json").write_text(json.dumps({"method": self.name, "toy": dataclasses.asdict(config)}))
        return {"steps": 0, "items": len(counts), "losses": []}

    def check(self, folder) -> None:
        if not Path(folder, "popularity.json").is_file():
            raise WhyrecError(f"{folder}: popularity.json is missing; re-run `whyrec train explainer --method toy`")

    def load(self, folder, device="auto", generation=None):
        return ToyModel(Path(folder), generation)

    def benchmark_variants(self, config) -> dict:
        return {"toy": config}


def toy_dataset(root: Path) -> Path:
    """A small prepared CSV dataset (items watched by 3, 6, ... users, each with an explanation)
    for the toy method's CLI tests; returns its folder."""
    from whyrec.cli import main

    rows = ["user,item,rating,title,explanation"] + [f"u{u},i{i},{1 + (u + i) % 5},Film {i},film {i} suits {u}"
                                                     for i in range(6) for u in range(3 * (i + 1))]
    (root / "ratings.csv").write_text("\n".join(rows) + "\n")
    assert main(["data", "prepare", "--source", "csv", "--path", str(root / "ratings.csv"), "--out", str(root / "d")]) == 0
    return root / "d"
