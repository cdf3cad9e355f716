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
ANSWER_TOKENS = 400  # default answer length: room for k titles, each with its reason


class RecAlpacaModel:
    cold_start = False

    def __init__(self, folder: Path, device: str = "auto", generation: GenerationConfig | None = None,
                 instructions: str | Path | None = None):
        from whyrec.methods.recalpaca.model import load_recalpaca
        from whyrec.utils import WhyrecError

        self.folder, self.gen = folder, generation or GenerationConfig(max_new_tokens=ANSWER_TOKENS)
        self.meta = json.loads((folder / "config.json").read_text())
        if instructions is None:
            found = [Path(s) for s in self.meta["instructions"] if (Path(s) / "instructions.jsonl").is_file()]
            if not found:
                raise WhyrecError(f"{folder} was not trained on an instruction folder that still exists; "
                                  "pass --instructions FOLDER (from `whyrec data instructions`)")
            instructions = found[0]
        source = self.source = Path(instructions)
        if not (source / "instructions.jsonl").is_file() or not (source / "run.json").is_file():
            raise WhyrecError(f"{source} is not an instruction-data folder; build one with `whyrec data instructions`")
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
                               user_profiles={u: r["input"] for u, r in self.records.items()},
                               also_user=self._buildable)
        self._answers: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()  # request threads and the batcher's worker share one model
        self._prefix: list[int] | None = None  # the prompts' common start, probed on the first stream

    def _buildable(self, user: str) -> bool:
        """A user without a record still gets a prompt if the instruction folder's encoder knows them."""
        from whyrec.utils import WhyrecError

        try:
            return bool(self._record(user))
        except WhyrecError:
            return False

    def _record(self, user: str) -> dict:
        if user not in self.records:
            from whyrec.methods.recalpaca.instructions.lookup import user_prompt

            self.records[user] = user_prompt(self.source, user)  # built the way the training prompts were
        return self.records[user]

    def _decoding(self):
        from whyrec.llm.generate import plain_greedy

        return plain_greedy(self.gen, "RecAlpaca")  # greedy without repetition penalty, as RecAlpaca is evaluated

    def answer_key(self, user: str) -> tuple[str, str]:
        """The answer cache's key: Run may change the decoding between calls."""
        from whyrec.config import generation_fingerprint

        return user, repr(sorted(generation_fingerprint(self._decoding()).items()))

    def _answer(self, user: str) -> str:
        with self._lock:
            key = self.answer_key(user)
            if key not in self._answers:
                rec = self._record(user)
                self._answers[key] = self.model.generate([(rec["instruction"], rec["input"])], self._decoding())[0]
            return self._answers[key]

    def _picks(self, user: str, k: int) -> list[dict]:
        from whyrec.methods.recalpaca.model import pick_recommendations

        rec = self._record(user)
        # Fillers follow the prompt's own ranking hint: its named first pick, then the listed order.
        cands = [rec["top1"]] + [c for c in rec["candidates"] if c != rec["top1"]]
        return pick_recommendations(self._answer(user), cands, k)

    def recommend(self, user: str, k: int) -> list[dict]:
        rows = []
        for rank, pick in enumerate(self._picks(user, k), 1):
            item = self.item_of.get(pick["title"], pick["title"])  # a built prompt's titles may have no id
            rows.append({"item": item, "title": pick["title"], "score": round(1 / rank, 4),
                         "from_model": pick["from_model"],
                         "explanation": (pick["reason"] or "(no reason given)") if pick["from_model"] else FILLER})
        return rows

    def recommend_cold(self, liked, k):
        raise Unsupported("RecAlpaca serves only users with a prompt in its instruction data")

    def _answer_all(self, users) -> None:
        """The answers of `users` not known yet, in one generate call: their rows share the decoder's
        batches (refilled as answers end) instead of decoding one user at a time."""
        with self._lock:
            todo = [u for u in dict.fromkeys(users) if self.answer_key(u) not in self._answers]
            if todo:
                recs = [self._record(u) for u in todo]
                texts = self.model.generate([(r["instruction"], r["input"]) for r in recs], self._decoding())
                self._answers.update(zip(map(self.answer_key, todo), texts))

    def explain(self, pairs: list[Pair]) -> list[str | Unsupported]:
        self._answer_all(p.user for p in pairs)
        out: list[str | Unsupported] = []
        for p in pairs:
            rec = self.recommend(p.user, len(self._record(p.user)["candidates"]))
            found = next((r["explanation"] for r in rec if r["item"] == p.item and r["from_model"]), None)
            out.append(found if found is not None else Unsupported(
                f"RecAlpaca explains only the items it picks for a user (its reasons), and it did not pick item "
                f"{p.item!r} for user {p.user!r}; see GET /users/{p.user}/recommendations?explain=true"))
        return out

    @property
    def explain_stream(self):
        """The server's continuous batching (`whyrec.serve.continuous`): `stream(pull, deliver,
        on_prefill)` answers the (key, Pair) rows `pull(free_slots)` hands over while it decodes. A
        decoding row is a user's answer: pairs of one user share it, and a pair whose user's answer is
        known is answered at once. None when the decoding needs HF generate (`model.refills`)."""
        from whyrec.methods.recalpaca.model import refills

        return self._stream if refills(self._decoding()) else None

    def _stream(self, pull, deliver, on_prefill=None) -> None:
        import torch

        from whyrec.llm.continuous_rows import pull_rows, refusing
        from whyrec.methods.recalpaca.alpaca import render_prompt

        waiting: dict[str, list] = {}  # user -> the (key, pair) requests their answer in flight serves

        def answer(key, pair: Pair) -> None:  # the user's answer is known: their picks' reasons
            try:
                deliver(key, self.explain([pair])[0])  # an Unsupported (item not picked) is that request's 409
            except Exception as e:  # noqa: BLE001 - this request alone fails
                deliver(key, e)

        def build(key, pair: Pair) -> tuple:  # the user's answer as a decoding row, shared by their requests
            rec = self._record(pair.user)
            # under the lock: a request thread's `_answer` may be encoding with the
            # same fast tokenizer, whose padding settings one thread must not change under another
            with self._lock:
                ids = self.model.prompt_ids([render_prompt(rec["instruction"], rec["input"])])[0]
            waiting[pair.user] = [(key, pair)]
            return pair.user, ids

        new_row = refusing(build, deliver)  # e.g. a user without a prompt: that request alone fails

        def admit(pulled: tuple) -> tuple | None:  # None: the request rides on a row in flight or a known answer
            key, pair = pulled
            if pair.user in waiting:
                waiting[pair.user].append((key, pair))
            elif self.answer_key(pair.user) in self._answers:
                answer(key, pair)
            else:
                return new_row(pulled)
            return None

        def rows(free: int) -> list:
            return pull_rows(pull, free, admit)

        def done(user: str, text: str) -> None:
            with self._lock:
                self._answers.setdefault(self.answer_key(user), text)
            for key, pair in waiting.pop(user):
                answer(key, pair)

        if self._prefix is None and self.records:
            with self._lock:
                self._prefix = self.model.stream_prefix(next(iter(self.records.values()))["instruction"]) or []
        with torch.inference_mode():
            self.model.stream(rows, done, self._decoding(), self._prefix, on_prefill)

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
