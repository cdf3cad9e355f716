"""RecExplainer's alignment tasks as chat examples (Lei et al., KDD 2024; METHODS §5.2).

Each generator turns the frozen target recommender's behaviour into question/answer pairs:

    {"task", "mode", "user", "items", "messages": [user turn, assistant turn], "placeholders"}

`placeholders` lists, per `<user>`/`<item>` token of the question, {"kind", "id"} (and, for a
history prefix, "history": its item ids). Tokens and placeholders of one kind pair up in order
of appearance, so a template may name the item before the user.

Modes decide how a user or an item is written in the question:

- behaviour (RecExplainer-B): text only; a user is the last `max_hist_len` titles they bought.
- intention (RecExplainer-I): `<user>` / `<item>` only; the connectors carry the target's vectors.
- hybrid (RecExplainer-H): the placeholder immediately followed by the text.

Behaviour mode keeps every task for a uniform mixture although iid2title and uid2hist are then
copy tasks (the answer is in the question). Question wording is ours; several templates per
task are drawn with a seeded RNG (RecExplainer: seed 2023). Answers list titles "; "-joined.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from importlib import resources

from whyrec.config import MODES, TASKS
from whyrec.utils import WhyrecError

USER_TOKEN, ITEM_TOKEN = "<user>", "<item>"
SEP = "; "

TEMPLATES = {
    "iid2title": ["What is the title of the item {item}?", "Name the item {item}.",
                  "Which product is {item}? Answer with its title.", "Tell me the title of {item}."],
    "iid2sim": ["Which item is most similar to {item}?", "Name the item closest to {item}.",
                "If someone likes {item}, which single other item resembles it most?",
                "Give the title of the item most alike to {item}."],
    "uid2hist": ["List the items that user {user} bought, oldest first.", "What is the purchase history of user {user}?",
                 "Which items has the user {user} interacted with? Give their titles in order.",
                 "Recall the recent purchases of user {user}."],
    "uid2next": ["Which item should be recommended next to user {user}?", "Predict the next item user {user} will buy.",
                 "What would user {user} most likely want to buy now?", "Suggest one item for user {user}."],
    "uidiid2rank": ["Rank these items for user {user}, most preferred first: {items}.",
                    "User {user} is considering {items}. Order them from most to least appealing for this user.",
                    "Sort the following items by how much user {user} would like them: {items}.",
                    "Given user {user}, put these candidates in order of preference: {items}."],
    "uidiid2binary": ["Would user {user} enjoy the item {item}? Answer Yes or No.",
                      "Is {item} a good recommendation for user {user}? Answer Yes or No.",
                      "Will user {user} like {item}? Reply with Yes or No.",
                      "Does {item} match the taste of user {user}? Yes or No?"],
    "uid2summary": ["Describe the preferences of user {user}.", "Summarise what user {user} likes.",
                    "Write a short profile of user {user}'s tastes.", "What kind of customer is user {user}?"],
}
SUMMARY_PROMPT = ("Write a short summary, under 100 words, of this customer's tastes and interests as shown by "
                  "what they bought. Their purchase history, oldest first: {history}")
_GENERAL_FILE = "general_chat.jsonl"
MAX_PREFIXES = 10  # uid2hist prefixes kept per user (see uid2hist; ~ the paper's share of the mixture)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise WhyrecError(f"unknown RecExplainer mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode


def history_text(target, items: Sequence[str]) -> str:
    return SEP.join(target.titles.get(i, str(i)) for i in items)


def render_user(target, user: str, mode: str, max_hist_len: int = 9, history: Sequence[str] | None = None) -> str:
    """How `user` appears in a question; `history` (item ids) overrides the target's history."""
    if mode == "intention":
        return USER_TOKEN
    items = list(target.history(user) if history is None else history)[-max_hist_len:]
    text = f"(purchase history: {history_text(target, items)})"
    return text if mode == "behaviour" else f"{USER_TOKEN} {text}"


def render_item(target, item: str, mode: str) -> str:
    title = target.titles.get(item, str(item))
    return {"behaviour": title, "intention": ITEM_TOKEN, "hybrid": f"{ITEM_TOKEN} {title}"}[mode]


def _example(task: str, mode: str, user, items: list, question: str, answer: str, placeholders: list) -> dict:
    return {"task": task, "mode": mode, "user": user, "items": items,
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "placeholders": placeholders if mode != "behaviour" else []}


def _pick(rng: random.Random, task: str) -> str:
    return rng.choice(TEMPLATES[task])


def _ph(kind: str, ident, history: Sequence[str] | None = None) -> dict:
    return {"kind": kind, "id": str(ident)} | ({"history": list(history)} if history is not None else {})


def iid2title(target, mode: str, items: Iterable[str] | None = None, seed: int = 2023) -> list[dict]:
    """Item recovery: the item (placeholder/title) -> its title."""
    rng, mode = random.Random(seed), check_mode(mode)
    return [_example("iid2title", mode, None, [i], _pick(rng, "iid2title").format(item=render_item(target, i, mode)),
                     target.titles.get(i, str(i)), [_ph("item", i)])
            for i in (items if items is not None else target.item2idx)]


def iid2sim(target, mode: str, similar: dict, items: Iterable[str] | None = None, seed: int = 2023) -> list[dict]:
    """The target's most similar item by embedding (`similar_items(target)`), as a title."""
    rng, mode = random.Random(seed), check_mode(mode)
    items = [i for i in (items if items is not None else similar) if i in similar]
    return [_example("iid2sim", mode, None, [i, similar[i]],
                     _pick(rng, "iid2sim").format(item=render_item(target, i, mode)),
                     target.titles.get(similar[i], str(similar[i])), [_ph("item", i)]) for i in items]


def uid2hist(target, mode: str, users: Iterable[str], max_hist_len: int = 9, prefixes: bool | None = None,
             seed: int = 2023, max_prefixes: int | None = MAX_PREFIXES) -> list[dict]:
    """History reconstruction: the last `max_hist_len` titles, "; "-joined.

    With `prefixes` (default: when the target can encode a prefix - SASRec,
    `material.can_encode_prefixes`) one example per history prefix, as
    RecExplainer does for SASRec; the `<user>` vector then encodes that prefix. Only the
    `max_prefixes` most recent prefixes of a user are kept (None: all, as RecExplainer):
    its 5-core Video Games histories are short, whereas on ML-1M (165 ratings a user on
    average) every prefix would make uid2hist ~96% of the mixture. An MF user vector only
    knows the full history, so one example a user.
    """
    from whyrec.methods.recexplainer.material import can_encode_prefixes

    rng, mode = random.Random(seed), check_mode(mode)
    prefixes = can_encode_prefixes(target) if prefixes is None else prefixes
    out = []
    for u in users:
        hist = list(target.history(u))
        ends = range(max(1, len(hist) - max_prefixes + 1) if max_prefixes else 1, len(hist) + 1)
        for end in (ends if prefixes else [len(hist)] if hist else []):
            prefix = hist[:end]
            q = _pick(rng, "uid2hist").format(user=render_user(target, u, mode, max_hist_len, prefix))
            out.append(_example("uid2hist", mode, u, prefix[-max_hist_len:], q,
                                history_text(target, prefix[-max_hist_len:]),
                                [_ph("user", u, prefix if prefixes else None)]))
    return out


def uid2next(target, mode: str, material, max_hist_len: int = 9, seed: int = 2023) -> list[dict]:
    """Next-item retrieval: the target's top-1 item for the user, as a title."""
    rng, mode = random.Random(seed), check_mode(mode)
    return [_example("uid2next", mode, r.user, [r.top1],
                     _pick(rng, "uid2next").format(user=render_user(target, r.user, mode, max_hist_len)),
                     target.titles.get(r.top1, str(r.top1)), [_ph("user", r.user)])
            for r in material.itertuples(index=False)]


def uidiid2rank(target, mode: str, material, max_hist_len: int = 9, seed: int = 2023) -> list[dict]:
    """Item ranking: the 5 sampled items shuffled in the question, in the target's order in the answer."""
    rng, mode = random.Random(seed), check_mode(mode)
    out = []
    for r in material.itertuples(index=False):
        ranked = [str(i) for i in r.top5]
        shown = rng.sample(ranked, len(ranked))
        q = _pick(rng, "uidiid2rank").format(user=render_user(target, r.user, mode, max_hist_len),
                                             items=SEP.join(render_item(target, i, mode) for i in shown))
        out.append(_example("uidiid2rank", mode, r.user, ranked, q, history_text(target, ranked),
                            [_ph("user", r.user)] + [_ph("item", i) for i in shown]))
    return out


def uidiid2binary(target, mode: str, material, max_hist_len: int = 9, seed: int = 2023) -> list[dict]:
    """Interest classification: Yes for the row's `pos` item, No for its `neg` item."""
    rng, mode = random.Random(seed), check_mode(mode)
    out = []
    for r in material.itertuples(index=False):
        for item, answer in ((r.pos, "Yes"), (r.neg, "No")):
            q = _pick(rng, "uidiid2binary").format(user=render_user(target, r.user, mode, max_hist_len),
                                                   item=render_item(target, item, mode))
            out.append(_example("uidiid2binary", mode, r.user, [item], q, answer,
                                [_ph("user", r.user), _ph("item", item)]))
    return out


def uid2summary(target, mode: str, users: Sequence[str], client, cache=None, max_hist_len: int = 9,
                seed: int = 2023) -> list[dict]:
    """A teacher LLM's short user summary from the last titles (RecExplainer used GPT-4)."""
    from whyrec.llm.client import complete_many

    rng, mode, users = random.Random(seed), check_mode(mode), list(users)
    asks = [[{"role": "user", "content": SUMMARY_PROMPT.format(
        history=history_text(target, list(target.history(u))[-max_hist_len:]))}] for u in users]
    summaries = complete_many(client, asks, cache, progress=False, max_tokens=200, desc="uid2summary")
    return [_example("uid2summary", mode, u, [], _pick(rng, "uid2summary").format(
        user=render_user(target, u, mode, max_hist_len)), s.strip(), [_ph("user", u)])
        for u, s in zip(users, summaries) if s.strip()]


def general_chat(mode: str, n: int | None = None, seed: int = 2023) -> list[dict]:
    """Our shipped general Q&A pairs (a small stand-in for ShareGPT) to keep chat ability."""
    text = (resources.files("whyrec") / "resources" / _GENERAL_FILE).read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    rng = random.Random(seed)
    rows = rng.sample(rows, min(n, len(rows))) if n is not None else rows
    return [_example("general", check_mode(mode), None, [], r["question"], r["answer"], []) for r in rows]


def build_alignment_tasks(target, users: Sequence[str], mode: str, tasks: Sequence[str] = TASKS,
                          material=None, similar: dict | None = None, teacher=None, cache=None,
                          max_hist_len: int = 9, seed: int = 2023) -> list[dict]:
    """The training mixture of `tasks` for `users` (items: every item the target knows).

    `material` / `similar` default to `alignment_material(target, users, seed=seed)` and
    `similar_items(target)`; uid2summary runs only when a `teacher` chat client is given.
    """
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise WhyrecError(f"unknown RecExplainer task {unknown[0]!r}; choose from {', '.join(TASKS)}")
    if material is None and {"uid2next", "uidiid2rank", "uidiid2binary"} & set(tasks):
        from whyrec.methods.recexplainer.material import alignment_material

        material = alignment_material(target, list(users), seed=seed)
    if similar is None and "iid2sim" in tasks:
        from whyrec.methods.recexplainer.material import similar_items

        similar = similar_items(target)
    make: dict[str, Callable[[], list[dict]]] = {
        "iid2title": lambda: iid2title(target, mode, seed=seed),
        "iid2sim": lambda: iid2sim(target, mode, similar, seed=seed),
        "uid2hist": lambda: uid2hist(target, mode, users, max_hist_len, seed=seed),
        "uid2next": lambda: uid2next(target, mode, material, max_hist_len, seed),
        "uidiid2rank": lambda: uidiid2rank(target, mode, material, max_hist_len, seed),
        "uidiid2binary": lambda: uidiid2binary(target, mode, material, max_hist_len, seed),
        "uid2summary": lambda: uid2summary(target, mode, users, teacher, cache, max_hist_len, seed) if teacher else [],
        "general": lambda: general_chat(mode, seed=seed),
    }
    return [ex for t in tasks for ex in make[t]()]
