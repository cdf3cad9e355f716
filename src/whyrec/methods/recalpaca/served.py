"""RecAlpaca served: the fine-tuned LLM picks from the user's candidate list and gives a reason each.

Recommendation and explanation are one generation here: the answer to the user's RecAlpaca
prompt (from the `whyrec data instructions` folder the run was trained on) is parsed with
`pick_recommendations`, like `whyrec recommend`, and each pick's reason becomes its
explanation, so `explain=true` costs nothing more. The answer is generated once per user and
kept. POST /explain answers for the items the model picked; any other item gets 409, since
RecAlpaca was trained to choose among candidates, not to argue for an arbitrary item.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from whyrec.config import GenerationConfig
from whyrec.methods.catalog import Catalog, Pair, Unsupported, revision

FILLER = "(filled from the candidate list, not chosen by the model; no reason given)"


class RecAlpacaModel:
    cold_start = False

    def __init__(self, folder: Path, device: str = "auto", generation: GenerationConfig | None = None):
        from whyrec.methods.recalpaca.model import load_recalpaca

        self.folder, self.gen = folder, generation or GenerationConfig()
        self.meta = json.loads((folder / "config.json").read_text())
        source = next(Path(s) for s in self.meta["instructions"] if (Path(s) / "instructions.jsonl").is_file())
        self.records, titles = {}, {}
        for line in (source / "instructions.jsonl").read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            ids = [str(i) for i in rec.get("candidate_items") or rec["candidates"]]
            titles.update(zip(ids, rec["candidates"]))
            self.records[str(rec["user"])] = rec
        self.item_of = {t: i for i, t in titles.items()}
        self.model = load_recalpaca(folder, device=device)
        self.revision = revision(folder, ["config.json", "adapter_model.safetensors", str(source / "instructions.jsonl")],
                                 repr(self.gen.max_new_tokens))
        self.catalog = Catalog(list(self.records), list(titles), titles,
                               user_profiles={u: r["input"] for u, r in self.records.items()})
        self._answers: dict[str, str] = {}
        self._lock = threading.Lock()  # request threads and the batcher's worker share one model

    def _answer(self, user: str) -> str:
        with self._lock:
            if user not in self._answers:
                rec = self.records[user]
                self._answers[user] = self.model.generate([(rec["instruction"], rec["input"])],
                                                          max_new_tokens=self.gen.max_new_tokens, batch_size=1)[0]
            return self._answers[user]

    def _picks(self, user: str, k: int) -> list[dict]:
        from whyrec.methods.recalpaca.model import pick_recommendations

        rec = self.records[user]
        # Fillers follow the prompt's own ranking hint: its named first pick, then the listed order.
        cands = [rec["top1"]] + [c for c in rec["candidates"] if c != rec["top1"]]
        return pick_recommendations(self._answer(user), cands, k)

    def recommend(self, user: str, k: int) -> list[dict]:
        rows = []
        for rank, pick in enumerate(self._picks(user, k), 1):
            item = self.item_of[pick["title"]]
            rows.append({"item": item, "title": pick["title"], "score": round(1 / rank, 4),
                         "from_model": pick["from_model"],
                         "explanation": (pick["reason"] or "(no reason given)") if pick["from_model"] else FILLER})
        return rows

    def recommend_cold(self, liked, k):
        raise Unsupported("RecAlpaca serves only users with a prompt in its instruction data")

    def explain(self, pairs: list[Pair]) -> list[str | Unsupported]:
        out: list[str | Unsupported] = []
        for p in pairs:
            rec = self.recommend(p.user, len(self.records[p.user]["candidates"]))
            found = next((r["explanation"] for r in rec if r["item"] == p.item and r["from_model"]), None)
            out.append(found if found is not None else Unsupported(
                f"RecAlpaca explains only the items it picks for a user (its reasons), and it did not pick item "
                f"{p.item!r} for user {p.user!r}; see GET /users/{p.user}/recommendations?explain=true"))
        return out

    def info(self) -> dict:
        base = self.meta.get("base_model", {})
        return {"method": "recalpaca", "backbone": base.get("name_or_path"), "dataset": None,
                "instructions": self.meta.get("instructions"), "steps": None, "revision": self.revision,
                "n_users": len(self.catalog.users), "n_items": len(self.catalog.items),
                "encoder": None, "encoder_dim": None, "training": {}, "method_config": self.meta.get("config", {}),
                "recommends": "the LLM's ranked picks from the user's candidate list (score = 1/rank; fillers "
                              "from the list, marked from_model=false, when it names fewer than k)",
                "explains": "the reason the LLM gives beside each pick; other items cannot be explained (409)",
                "cold_start": False, "generation": {"max_new_tokens": self.gen.max_new_tokens, "do_sample": False},
                "folder": str(self.folder)}
