"""LLM-written item profiles, user profiles and ground-truth explanations (XRec's data pipeline).

XRec (Ma et al., "XRec: Large Language Models for Explainable Recommendation", EMNLP 2024
Findings; `generation/` in HKUDS/XRec, METHODS §3.5) has gpt-3.5-turbo write three texts,
each at most 50 words:

1. item profile: from the item's basic information (title, description) and a list of user
   reviews, "what types of users would enjoy this item" as `{"summarization": ...}`;
2. user profile: from the items the user bought (title, item profile as description, rating,
   the user's review), the user's tastes as `{"summarization": ...}`;
3. explanation: from one user's review of one item, "why the user would enjoy/buy it", one
   line of plain text. This is the reference the XRec explainer is trained and scored on.

Here the teacher is any `whyrec.llm.client` chat client (a local HF model or an
OpenAI-compatible endpoint). Profiles use TRAIN interactions only, so valid/test reviews
never leak into the profiles the explainer sees; explanations are written for pairs of every
split (they are the references). The prompts are our own wording, shipped as editable
`str.format` templates in `whyrec/resources/prompts/` (double any literal brace: `{{`).
Deviations from XRec: reviews are clipped to `review_chars` characters and at most
`reviews_per_item` / `items_per_user` go into a prompt (XRec's demo passes them all), the
explanation prompt also names the item title, and replies are cleaned (JSON wrappers
stripped, one line, cut to 50 words) instead of parsed strictly.

Each stage appends `{"id", "prompt" (digest of the messages sent), "text"}` lines to
`out/{items,users,explanations}.jsonl` as answers arrive: a rerun sends nothing, a killed run
resumes. Nothing mixes: the folder's fingerprint holds the data digest, the teacher (backend,
model, `cache_params` + max_tokens, a local model's weights identity), templates and limits, so
changing one is refused by name (or rebuilt with --overwrite); a row is reused only for the same
id and prompt digest, as caps and seed may change and alter prompts (a user's quotes item profiles).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path

import pandas as pd

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.fingerprint import digest
from whyrec.llm.client import ChatCache, ChatClient, Messages, complete_many
from whyrec.utils import WhyrecError

MAX_WORDS = 50  # XRec's limit for every generated text
STAGES = ("item_profile", "user_profile", "explanation")
STAGE_FILES = {"item_profile": "items.jsonl", "user_profile": "users.jsonl", "explanation": "explanations.jsonl"}
PAIR_SEP = "\t"  # explanation ids are "user<TAB>item": Amazon/Yelp ids never contain a tab
_NONE = "(none)"
NO_TITLE = "(no title given)"


# ---------------------------------------------------------------- templates and reply cleaning

def load_templates(templates_dir: str | Path | None = None) -> dict[str, str]:
    """The three prompt templates; files in `templates_dir` override the shipped ones by name."""
    shipped = resources.files("whyrec") / "resources" / "prompts"
    out = {}
    for stage in STAGES:
        custom = Path(templates_dir) / f"{stage}.txt" if templates_dir else None
        source = custom if custom is not None and custom.exists() else shipped / f"{stage}.txt"
        out[stage] = source.read_text(encoding="utf-8")
    return out


def _render(template: str, stage: str, **fields: str) -> Messages:
    try:
        return [{"role": "user", "content": template.format(**fields)}]
    except (KeyError, IndexError, ValueError) as e:
        raise WhyrecError(f"{stage} template: bad placeholder {e} (available: "
                          f"{', '.join('{' + k + '}' for k in fields)}; write literal braces as {{{{ }}}})") from None


_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_LOOSE_JSON = re.compile(r'^\{\s*"[^"]{0,40}"\s*:\s*"?(.*?)"?\s*\}?$', re.DOTALL)


def _unwrap_json(text: str) -> str:
    """The string inside {"summarization": "..."} (or any one-key object); truncated JSON too."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        loose = _LOOSE_JSON.match(text)  # e.g. cut off by max_tokens before the closing quote
        return loose.group(1).replace('\\"', '"') if loose else text
    if isinstance(value, dict):
        strings = [v for v in value.values() if isinstance(v, str)]
        return str(value.get("summarization") or (strings[0] if strings else text))
    return value if isinstance(value, str) else text


def clean_reply(text: str, max_words: int = MAX_WORDS) -> str:
    """One line of at most `max_words` words, without code fences, JSON wrappers or quotes."""
    text = _FENCE.sub("", (text or "").strip()).strip()
    if text.startswith("{") or text.startswith('"'):
        text = _unwrap_json(text)
    words = text.split()
    return " ".join(words[:max_words]).strip().strip('"').strip()


def _clip(text, chars: int) -> str:
    text = " ".join(str(text).split()) if isinstance(text, str) and text.strip() else ""
    return text if len(text) <= chars else text[:chars].rsplit(" ", 1)[0] + " ..."


# ---------------------------------------------------------------- resumable stages

def read_done(path: Path) -> dict[str, str]:
    """id -> text of a stage file (the last row of each id); a torn last line is ignored."""
    return {i: text for (i, _), text in _read_rows(path).items()}


def _read_rows(path: Path, cut_torn: bool = False) -> dict[tuple[str, str | None], str]:
    """(id, prompt digest) -> text of a stage file's rows; rows without a digest (an earlier whyrec)
    get None, which matches no prompt. A torn last line (a kill mid-write) is ignored, and with
    `cut_torn` cut off so the next appended row starts on a line of its own."""
    done: dict[tuple[str, str | None], str] = {}
    data = path.read_bytes() if path.exists() else b""
    if cut_torn and data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
            prompt = row.get("prompt")
            done[(str(row["id"]), prompt if isinstance(prompt, str) else None)] = str(row["text"])
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            continue
    return done


def _append(path: Path, rows: Sequence[dict]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        f.flush()
        os.fsync(f.fileno())


@dataclass
class StageStats:
    written: int = 0
    """Texts generated in this run."""
    reused: int = 0
    """Ids found in the stage file from an earlier run."""
    empty: int = 0
    """Replies still empty after one retry (recorded as empty text)."""
    retried: int = 0
    skipped: dict = field(default_factory=dict)
    """Ids not asked about, by reason."""


@dataclass
class _Runner:
    client: ChatClient
    cache: ChatCache | None
    out: Path
    chunk_size: int
    max_tokens: int
    progress: bool

    def run(self, stage: str, jobs: Sequence[tuple[str, Callable[[], Messages]]],
            stats: StageStats) -> dict[str, str]:
        """Answer every (id, prompt builder) whose exact prompt the stage file has no answer to;
        return id -> text for `jobs`."""
        from tqdm.auto import tqdm

        path = self.out / STAGE_FILES[stage]
        stored = _read_rows(path, cut_torn=True)
        # Digests only: all prompts of a large dataset would not fit comfortably in memory.
        prompts = {i: digest(build()) for i, build in jobs}
        done = {i: stored[(i, prompts[i])] for i, _ in jobs if (i, prompts[i]) in stored}
        todo = [(i, build) for i, build in jobs if i not in done]
        stats.reused = len(jobs) - len(todo)
        with tqdm(total=len(jobs), initial=stats.reused, disable=not self.progress, desc=stage) as bar:
            for start in range(0, len(todo), self.chunk_size):
                chunk = todo[start:start + self.chunk_size]
                texts = self._answer([build() for _, build in chunk], stats)
                rows = [{"id": i, "prompt": prompts[i], "text": t} for (i, _), t in zip(chunk, texts)]
                _append(path, rows)  # after each chunk: an interrupted run loses at most one chunk
                done.update((r["id"], r["text"]) for r in rows)
                bar.update(len(chunk))
        return {i: done[i] for i, _ in jobs}

    def _answer(self, prompts: list[Messages], stats: StageStats) -> list[str]:
        texts = [clean_reply(r) for r in self._complete(prompts, self.cache)]
        empty = [k for k, t in enumerate(texts) if not t]
        if empty:  # retry once without the cache, which would hand back the same empty answer
            stats.retried += len(empty)
            again = self._complete([prompts[k] for k in empty], None)
            for k, reply in zip(empty, again):
                texts[k] = clean_reply(reply)
        stats.empty += sum(not t for t in texts)
        stats.written += len(texts)
        return texts

    def _complete(self, prompts: list[Messages], cache: ChatCache | None) -> list[str]:
        return complete_many(self.client, prompts, cache, progress=False, max_tokens=self.max_tokens)


# ---------------------------------------------------------------- what each stage asks

@dataclass
class PromptLimits:
    """How much of the data goes into one prompt (keeps prompts inside small models' context)."""

    reviews_per_item: int = 5
    items_per_user: int = 10
    review_chars: int = 500
    description_chars: int = 500


def _items_frame(ds: RecDataset) -> pd.DataFrame:
    items = ds.items.drop_duplicates(S.ITEM).set_index(S.ITEM)
    if S.TITLE not in items:
        items[S.TITLE] = items.index
    if S.DESCRIPTION not in items:
        items[S.DESCRIPTION] = None
    return items


def _field(items: pd.DataFrame, item: str, col: str):
    return items.at[item, col] if item in items.index else None


def _title(items: pd.DataFrame, item: str) -> str:
    title = _field(items, item, S.TITLE)
    # Without metadata the Amazon loader uses the ASIN as title; small teachers then parrot the
    # ASIN over and over, so say plainly that there is no title.
    return str(title) if isinstance(title, str) and title.strip() and title != item else NO_TITLE


def _rating(row) -> str:
    value = getattr(row, S.RATING, None)
    return f"{float(value):g}/5" if value is not None and pd.notna(value) else "unrated"


def _item_jobs(ids: list[str], items: pd.DataFrame, train: pd.DataFrame, template: str, lim: PromptLimits):
    by_item = {k: g for k, g in train.groupby(S.ITEM, sort=False)}
    jobs = []
    for item in ids:
        rows = by_item.get(item, train.iloc[:0]).head(lim.reviews_per_item)
        reviews = "\n".join(f"- rated {_rating(r)}: {_clip(r.review, lim.review_chars)}" for r in rows.itertuples())
        fields = {"title": _title(items, item),
                  "description": _clip(_field(items, item, S.DESCRIPTION), lim.description_chars) or _NONE,
                  "reviews": reviews or _NONE}
        jobs.append((item, partial(_render, template, "item_profile", **fields)))
    return jobs


def _user_jobs(ids: list[str], items: pd.DataFrame, item_profiles: dict[str, str], train: pd.DataFrame,
               template: str, lim: PromptLimits):
    by_user = {k: g for k, g in train.groupby(S.USER, sort=False)}
    jobs = []
    for user in ids:
        lines = []
        for r in by_user[user].head(lim.items_per_user).itertuples():
            # XRec passes the item profile as the item's description; fall back to the real one.
            about = item_profiles.get(r.item) or _clip(_field(items, r.item, S.DESCRIPTION), lim.description_chars)
            lines.append(f"- title: {_title(items, r.item)}\n  suits: {about or _NONE}\n  rating: {_rating(r)}\n"
                         f"  review: {_clip(r.review, lim.review_chars) or _NONE}")
        jobs.append((user, partial(_render, template, "user_profile", purchases="\n".join(lines))))
    return jobs


def _pair_jobs(pairs: pd.DataFrame, items: pd.DataFrame, template: str, lim: PromptLimits):
    jobs = []
    for r in pairs.itertuples():
        fields = {"title": _title(items, r.item), "review": _clip(r.review, lim.review_chars * 2), "rating": _rating(r)}
        jobs.append((f"{r.user}{PAIR_SEP}{r.item}", partial(_render, template, "explanation", **fields)))
    return jobs


# ---------------------------------------------------------------- choosing what to write

def _reviewed(ds: RecDataset) -> pd.DataFrame:
    """Interactions with review text, newest first, one row per (user, item)."""
    inter = ds.interactions
    if S.REVIEW not in inter:
        raise WhyrecError("dataset has no review column; profiles need review data "
                          "(e.g. `whyrec data prepare --from amazon-json`)")
    if S.SPLIT not in inter:
        raise WhyrecError("dataset has no split column; profiles may only read TRAIN reviews, so split it "
                          "first (`whyrec data prepare ... --split random`)")
    frame = inter[inter[S.REVIEW].fillna("").astype(str).str.strip() != ""]
    if S.TIMESTAMP in frame:
        frame = frame.sort_values([S.TIMESTAMP, S.USER, S.ITEM], ascending=[False, True, True], kind="stable")
    return frame.drop_duplicates([S.USER, S.ITEM])


def _select_pairs(reviewed: pd.DataFrame, max_pairs: int | None, seed: int) -> pd.DataFrame:
    if max_pairs is None or max_pairs >= len(reviewed):
        return reviewed
    return reviewed.sample(n=max_pairs, random_state=seed).sort_index()


def _priority(first: Sequence[str], rest: Sequence[str], cap: int | None) -> list[str]:
    """Ids of the chosen pairs first (their profiles are what a small run needs), then the rest."""
    ordered = list(dict.fromkeys([*first, *sorted(rest)]))
    return ordered if cap is None else ordered[:cap]


# ---------------------------------------------------------------- entry point

def write_profiles(ds: RecDataset, out: str | Path, client: ChatClient, templates_dir: str | Path | None = None,
                   max_items: int | None = None, max_users: int | None = None, max_pairs: int | None = None,
                   cache: ChatCache | None = None, progress: bool = True, chunk_size: int = 32,
                   max_tokens: int = 128, limits: PromptLimits | None = None, seed: int = 42,
                   overwrite: bool = False) -> RecDataset:
    """Have `client` write item profiles, user profiles and explanations; save an XRec-style dataset.

    Args:
        ds: review data with `review` and `split` columns (e.g. from `load_amazon_json` + a split).
        out: output folder; holds the stage JSONL files and, at the end, the saved RecDataset.
        client: any chat client of `whyrec.llm.client` (its own batch size / concurrency apply).
        templates_dir: folder with item_profile.txt / user_profile.txt / explanation.txt overriding
            the shipped prompts (missing files fall back to the shipped ones).
        max_items, max_users, max_pairs: caps for small runs; pairs are a seeded sample and the
            items and users of the sampled pairs are profiled first.
        cache: a ChatCache shared across runs (the JSONL files already make reruns free).
        chunk_size: answers appended to the stage file at a time (work lost on a crash).
        max_tokens: answer length cap (50 words plus a JSON wrapper fit in 128 tokens).
        overwrite: replace `out` if it holds anything else (built beside it, then renamed); without
            it a folder from other data, teacher or prompts is refused (see the module doc).

    Returns:
        The dataset with items.profile, users.profile and `texts` (user, item, explanation, split);
        meta["teacher"] counts written, reused, retried and empty texts per stage.
    """
    from whyrec.outputs import frames_digest, output_folder

    templates, lim = load_templates(templates_dir), limits or PromptLimits()
    digests = {k: hashlib.sha256(v.encode()).hexdigest()[:12] for k, v in templates.items()}
    fingerprint = {"data": frames_digest(ds.interactions, ds.items, ds.users), "teacher": teacher_identity(client, max_tokens),
                   "templates": digests, "limits": vars(lim), "max_tokens": max_tokens}
    with output_folder(out, "teacher-profile dataset", fingerprint, overwrite=overwrite) as work:
        return _write(ds, work, client, templates, lim, max_items, max_users, max_pairs, cache, progress,
                      chunk_size, max_tokens, seed)


def teacher_identity(client: ChatClient, max_tokens: int) -> dict:
    """What decides the teacher's answers besides the prompts (not the server URL: its port may change)."""
    ident = {"backend": client.backend_id.split(":")[0], "model": client.model,
             "params": client.cache_params(max_tokens)}
    weights = getattr(client, "weights_identity", None)
    return {**ident, "weights": weights()} if weights is not None else ident


def _write(ds: RecDataset, out: Path, client: ChatClient, templates: dict[str, str], lim: PromptLimits,
           max_items: int | None, max_users: int | None, max_pairs: int | None, cache: ChatCache | None,
           progress: bool, chunk_size: int, max_tokens: int, seed: int) -> RecDataset:
    reviewed = _reviewed(ds)
    train = reviewed[reviewed[S.SPLIT] == S.TRAIN]
    pairs = _select_pairs(reviewed, max_pairs, seed)
    items = _items_frame(ds)
    runner = _Runner(client, cache, out, max(1, chunk_size), max_tokens, progress)
    stats = {stage: StageStats() for stage in STAGES}

    item_ids = _priority(pairs[S.ITEM].tolist(), items.index.tolist(), max_items)
    item_profiles = runner.run("item_profile", _item_jobs(item_ids, items, train, templates["item_profile"], lim),
                               stats["item_profile"])
    trained_users = set(train[S.USER])
    ordered = _priority(pairs[S.USER].tolist(), list(trained_users), None)
    # Zero-shot users (no TRAIN review) have nothing to summarise; count the ones the pairs need.
    stats["user_profile"].skipped = {"no_train_reviews": sum(u not in trained_users for u in ordered)}
    user_ids = [u for u in ordered if u in trained_users][:max_users]
    user_profiles = runner.run("user_profile", _user_jobs(user_ids, items, item_profiles, train,
                                                          templates["user_profile"], lim), stats["user_profile"])
    explanations = runner.run("explanation", _pair_jobs(pairs, items, templates["explanation"], lim),
                              stats["explanation"])
    result = _assemble(ds, pairs, item_profiles, user_profiles, explanations)
    result.meta["teacher"] = _teacher_meta(client, templates, stats, lim, max_tokens)
    result.save(out)
    return result


def _assemble(ds: RecDataset, pairs: pd.DataFrame, item_profiles: dict[str, str], user_profiles: dict[str, str],
              explanations: dict[str, str]) -> RecDataset:
    items, users = ds.items.copy(), ds.users.copy()
    items[S.PROFILE] = items[S.ITEM].map(item_profiles).replace("", None)
    users[S.PROFILE] = users[S.USER].map(user_profiles).replace("", None)
    keys = pairs[S.USER] + PAIR_SEP + pairs[S.ITEM]
    texts = pd.DataFrame({S.USER: pairs[S.USER].to_numpy(), S.ITEM: pairs[S.ITEM].to_numpy(),
                          S.EXPLANATION: keys.map(explanations).to_numpy(), S.SPLIT: pairs[S.SPLIT].to_numpy()})
    texts = texts[texts[S.EXPLANATION].fillna("") != ""].reset_index(drop=True)
    return RecDataset(ds.interactions.copy(), items, users, user2idx=dict(ds.user2idx), item2idx=dict(ds.item2idx),
                      meta={k: v for k, v in ds.meta.items() if k != "summary"}, texts=texts)


def _teacher_meta(client: ChatClient, templates: dict[str, str], stats: dict[str, StageStats],
                  lim: PromptLimits, max_tokens: int) -> dict:
    return {"backend": client.backend_id, "model": client.model, "max_words": MAX_WORDS, "max_tokens": max_tokens,
            "limits": vars(lim),
            "templates": {k: hashlib.sha256(v.encode()).hexdigest()[:12] for k, v in templates.items()},
            "stages": {k: vars(v) for k, v in stats.items()}}
