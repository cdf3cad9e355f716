"""RecAlpaca's instruction data for MovieLens-100K (METHODS §6.2), rebuilt from public parts.

RecAlpaca's 13k training examples are not public; only its 200-user test file is. Each
training example here has the layout of that file's `input` (profile, liked and disliked
titles, 20 LightGCN candidates, the LightGCN top-1, Chat-REC style) and an output naming
5 candidates with one reason each:

1. Split: every user's ratings are cut into a history (what the prompt shows and the
   encoder trains on) and a seeded held-out part (`holdout`, 20% as the test file's testGT).
   With an existing encoder folder, its training interactions define the history.
2. Candidates: the top-`n_candidates` items by LightGCN score (history masked); the top-1
   is the best of them; the list is shown in a seeded shuffle (the test file does not list
   them by score either). Targets are the held-out items rated >= 4 among the candidates.
3. Output: with a teacher (any `whyrec.llm.client` chat client) the teacher answers the
   prompt, told which candidates the user later liked; answers naming a movie outside the
   candidates, or naming too few, are dropped, and identical answers are kept once. Without
   a teacher, a grounded answer lists the top-1 and the targets (then the best-scored other
   candidates not known to be disliked) with `whyrec.data.grounded` reasons, which cite
   only true shared directors, cast or genres with the user's liked history movies.
4. Instructions: the seed instruction and hand-written rewordings
   (`resources/prompts/recalpaca_instructions.txt`); a teacher adds self-instruct-style
   paraphrases, dropping any with ROUGE-L F >= 0.7 to one already kept (Self-Instruct's
   filter). The pool is saved in out/instruction_pool.json and reused.

No test leakage: the test file names no user ids, so `match_test_users` identifies
each of its users by exact demographics plus the overlap of its liked titles with a user's
>= 4-rated titles; their testGT titles are then removed from those users' histories (and
from the encoder graph), from their candidates, targets and outputs.

Parts: `recalpaca_titles` (title forms and answer parsing), `recalpaca_testusers` (test-user
matching), `instruction_prompts` (input layout, instruction pool), `instruction_examples`
(split, encoder, candidates), `instruction_outputs` (teacher and grounded outputs); this module
drives them and owns the output files.

Resumable: records are appended to out/instructions.jsonl (and skips to out/skipped.jsonl)
keyed by user id after every chunk; a rerun skips users already in either file.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from whyrec.config import LightGCNConfig
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.methods.recalpaca.instructions.examples import (
    DEFAULT_ENCODER,
    ExampleContext,
    build_example,
    short_title_facts,
    split_from_encoder,
    split_history,
    train_history_encoder,
)
from whyrec.methods.recalpaca.instructions.outputs import (
    check_teacher_answer,
    grounded_output,
    teacher_messages,
)
from whyrec.methods.recalpaca.instructions.prompts import N_CHOICES, instruction_pool
from whyrec.methods.recalpaca.instructions.testusers import (
    SHARED_TEST,
    TestMatch,
    banned_items,
    match_test_users,
)
from whyrec.methods.recalpaca.instructions.titles import short_title
from whyrec.utils import WhyrecError, environment_info, write_json

RECORDS, SKIPPED = "instructions.jsonl", "skipped.jsonl"


# ---------------------------------------------------------------- resumable files


def _read_ids(path: Path, key: str = "id") -> set[str]:
    """Ids of an append-only JSONL file; a torn last line (crash mid-write) is ignored."""
    ids: set[str] = set()
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                ids.add(str(json.loads(line)[key]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return ids


def _append(path: Path, rows: Sequence[dict]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _outputs_seen(path: Path) -> set[str]:
    """Whitespace- and case-normalised outputs already written: an identical answer is kept once."""
    seen = set()
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                seen.add(" ".join(json.loads(line)["output"].lower().split()))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue
    return seen


# ---------------------------------------------------------------- the entry point


def build_instructions(out: str, encoder: str | None = None, teacher=None,
                       exclude_test: str | None = str(SHARED_TEST) if SHARED_TEST.exists() else None,
                       n_candidates: int = 20, max_users: int | None = None, seed: int = 0,
                       progress: bool = True, *, data: RecDataset | None = None, holdout: float = 0.2,
                       encoder_config: LightGCNConfig | None = None, users: Sequence[str] | None = None,
                       n_paraphrases: int = 20, min_choices: int = N_CHOICES, chunk_size: int = 16,
                       max_tokens: int = 400, cache=None, overwrite: bool = False) -> Path:
    """Write RecAlpaca-style instruction data to `out/instructions.jsonl`; return that path.

    Args:
        out: output folder (instructions.jsonl, skipped.jsonl, instruction_pool.json, run.json,
            and encoder/ + encoder_data/ when an encoder is trained here).
        encoder: an encoder folder (`whyrec train encoder`); its training interactions are the
            history. None trains a small LightGCN (`encoder_config`) on a seeded split.
        teacher: a chat client (`whyrec.llm.client`) writing outputs and paraphrases; None
            writes grounded outputs from the data.
        exclude_test: the RecAlpaca test file; its users' testGT titles never reach the data.
        n_candidates: LightGCN candidates per prompt (RecAlpaca: 20).
        max_users: a seeded sample of this many users (None: all).
        data: the ratings (default: `load_ml100k()`, with Wikidata facts for the reasons).
        holdout: share of each user's ratings held out when the encoder is trained here.
        users: only these user ids (before `max_users`).
        min_choices: a teacher answer must name at least this many candidates.
        max_tokens, chunk_size, cache: teacher answer cap, users per appended chunk, ChatCache.
        overwrite: replace `out` if it holds anything else (built beside it, then renamed). Without
            it, a folder written from other data, encoder, test file, seed or teacher is refused,
            naming what differs (its records would be mixed in); `max_users`/`users` may grow.
    """
    from whyrec.outputs import (
        HARMLESS_FIELDS,
        fingerprint_of,
        folder_digest,
        frames_digest,
        output_folder,
    )

    if n_candidates < N_CHOICES:
        raise WhyrecError(f"n_candidates={n_candidates} but a prompt asks for {N_CHOICES} movies")
    if data is None:
        from whyrec.data.movielens import load_ml100k

        data = load_ml100k()
    fingerprint = {
        "data": frames_digest(data.interactions, data.items, data.users),
        "encoder": folder_digest(encoder) if encoder else None,
        "exclude_test": folder_digest(exclude_test) if exclude_test else None,
        "n_candidates": n_candidates, "seed": seed, "holdout": holdout if encoder is None else None,
        "encoder_config": fingerprint_of(encoder_config or DEFAULT_ENCODER, HARMLESS_FIELDS + ("epochs", "patience"))
        if encoder is None else None,
        "teacher": {"backend": teacher.backend_id.split(":")[0], "model": teacher.model} if teacher else None,
        "min_choices": min_choices,  # not n_paraphrases: the first run's pool is saved and reused
        "max_tokens": max_tokens if teacher else None}
    with output_folder(out, "instruction dataset", fingerprint, overwrite=overwrite) as work:
        return _build_instructions(work, encoder, teacher, exclude_test, n_candidates, max_users, seed, progress,
                                   data, holdout, encoder_config, users, n_paraphrases, min_choices, chunk_size,
                                   max_tokens, cache)


def _build_instructions(out_dir: Path, encoder: str | None, teacher, exclude_test: str | None, n_candidates: int,
                        max_users: int | None, seed: int, progress: bool, data: RecDataset, holdout: float,
                        encoder_config: LightGCNConfig | None, users: Sequence[str] | None, n_paraphrases: int,
                        min_choices: int, chunk_size: int, max_tokens: int, cache) -> Path:
    from tqdm.auto import tqdm

    from whyrec.encoders.artifact import load_encoder
    from whyrec.llm.client import complete_many
    from whyrec.outputs import destination

    match = match_test_users(exclude_test, data) if exclude_test else None
    banned = banned_items(data, match)
    inter = data.interactions
    if banned:  # test pairs leave the history, the held-out part and the encoder graph
        leaked = [i in banned.get(u, ()) for u, i in zip(inter[S.USER], inter[S.ITEM], strict=True)]
        inter = inter[~np.array(leaked, dtype=bool)]
    if encoder is None:
        inter = split_history(inter, holdout, seed)
        ds = RecDataset(inter, data.items, data.users, dict(data.user2idx), dict(data.item2idx))
        enc = load_encoder(train_history_encoder(ds, out_dir, encoder_config or DEFAULT_ENCODER))
    else:
        enc = load_encoder(encoder)
        inter = split_from_encoder(inter, enc, banned)
    pool = instruction_pool(out_dir, teacher, n_paraphrases, seed, cache)
    idx2item = [""] * enc.n_items
    for item, i in enc.item2idx.items():
        idx2item[i] = item
    ctx = ExampleContext(facts=short_title_facts(data), titles={str(i): short_title(t) for i, t in zip(
        data.items[S.ITEM], data.items[S.TITLE], strict=True)}, user_rows=dict(tuple(inter.groupby(S.USER))),
        users=data.users.set_index(S.USER), enc=enc, idx2item=idx2item, banned=banned, pool=pool,
        n_candidates=n_candidates, seed=seed)
    todo = _users(inter, users, max_users, seed)
    records, skipped = out_dir / RECORDS, out_dir / SKIPPED
    done = _read_ids(records) | _read_ids(skipped)
    seen_outputs = _outputs_seen(records)
    pending = [u for u in todo if u not in done]
    counts = {"reused": len(todo) - len(pending), "written": 0, "skipped": {}}
    for start in tqdm(range(0, len(pending), chunk_size), desc="instructions", disable=not progress):
        examples, kept, drops = [], [], []
        for user in pending[start:start + chunk_size]:
            ex = build_example(ctx, user)
            if isinstance(ex, str):
                drops.append({"id": user, "reason": ex})
            else:
                ex["_banned_titles"] = match.excluded.get(user, []) if match else []
                examples.append(ex)
        if teacher is not None:
            answers = complete_many(teacher, [teacher_messages(e) for e in examples], cache, progress=False,
                                    max_tokens=max_tokens)
            results = [check_teacher_answer(e, a, min_choices) for e, a in zip(examples, answers, strict=True)]
        else:
            results = [grounded_output(ctx, e) for e in examples]
        for ex, res in zip(examples, results, strict=True):
            text = " ".join(res["output"].lower().split()) if isinstance(res, dict) else ""
            if isinstance(res, dict) and text in seen_outputs:
                res = "duplicate_output"
            if isinstance(res, str):
                drops.append({"id": ex["id"], "reason": res})
                continue
            seen_outputs.add(text)
            kept.append({k: v for k, v in ex.items() if not k.startswith("_")} | res)
        _append(records, kept)
        _append(skipped, drops)
        counts["written"] += len(kept)
        for d in drops:
            counts["skipped"][d["reason"]] = counts["skipped"].get(d["reason"], 0) + 1
    where = str(destination(out_dir) / "encoder") if encoder is None else str(enc.path)  # after an overwrite's rename
    config = {"encoder": where, "exclude_test": exclude_test, "n_candidates": n_candidates,
              "max_users": max_users, "seed": seed, "holdout": holdout if encoder is None else None,
              "encoder_config": asdict(encoder_config or DEFAULT_ENCODER) if encoder is None else None,
              "n_paraphrases": n_paraphrases, "min_choices": min_choices, "max_tokens": max_tokens}
    _write_run(out_dir, config, teacher, match, pool, counts)
    return records


def _users(inter: pd.DataFrame, only: Sequence[str] | None, max_users: int | None, seed: int) -> list[str]:
    ids = sorted(set(inter[S.USER]), key=lambda u: (len(u), u))
    if only is not None:
        wanted = {str(u) for u in only}
        ids = [u for u in ids if u in wanted]
    if max_users is not None and max_users < len(ids):
        ids = sorted(random.Random(seed).sample(ids, max_users), key=lambda u: (len(u), u))
    return ids


def _write_run(out_dir: Path, config: dict, teacher, match: TestMatch | None, pool: list[str], counts: dict) -> None:
    write_json(out_dir / "run.json", {
        "command": "whyrec data instructions", "config": config,
        "teacher": {"backend": teacher.backend_id, "model": teacher.model} if teacher is not None else None,
        "instructions": len(pool), "counts": counts,
        "test_users": None if match is None else {
            "method": "exact age/gender/occupation, then the most of the row's liked titles among the "
                      "user's >= 4-rated titles", "users": len(match.excluded), "rows": match.rows},
        "environment": environment_info()})
