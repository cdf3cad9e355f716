"""The text side of RecAlpaca's instruction data: the `input` layout and the instruction pool.

The input copies the shared test file's layout word for word, typos included, because a
model trained here is evaluated on exactly that text. The instruction pool is the seed
instruction plus hand-written rewordings; a teacher may add Self-Instruct-style paraphrases,
kept only when no kept instruction is a near copy (ROUGE-L F >= 0.7, Self-Instruct's filter).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from whyrec.utils import read_json, write_json

N_CHOICES = 5  # "Please select the top 5 movies"
LIKED_MIN = 4.0  # the test file's "score 5 out 5" lists hold the user's 4- and 5-star movies
DUPLICATE_ROUGE = 0.7  # Self-Instruct keeps a new instruction only below this ROUGE-L to all kept ones
POOL = "instruction_pool.json"


def template(name: str) -> str:
    """A prompt file shipped in `whyrec/resources/prompts/`."""
    return (resources.files("whyrec") / "resources" / "prompts" / name).read_text(encoding="utf-8")


def fill(text: str, **fields: str) -> str:
    """`text` with each '{key}' replaced by its value."""
    for key, value in fields.items():  # replace, not format: titles may hold braces
        text = text.replace("{" + key + "}", value)
    return text


def profile_text(age, gender: str, occupation: str) -> str:
    """'She is 23 old, and She is a student' as the test file words it ('other' is left out,
    'retired' reads 'has retired')."""
    who = "She" if str(gender).upper().startswith("F") else "He"
    text = f"{who} is {age} old"
    if occupation == "student":
        return f"{text}, and {who} is a student"
    if occupation == "retired":
        return f"{text}, and has retired"
    return text if occupation in ("other", "", None) else f"{text}, and work as {occupation}"


def render_input(profile: str, liked: Sequence[str], disliked2: Sequence[str], disliked1: Sequence[str],
                 candidates: Sequence[str], top1: str) -> str:
    """The test file's `input` layout (typos kept: a model is evaluated on that exact text)."""
    return fill(template("recalpaca_input.txt").removesuffix("\n"), profile=profile, liked=repr(list(liked)),
                disliked2=repr(list(disliked2)), disliked1=repr(list(disliked1)),
                candidates=repr(list(candidates)), top1=top1)


def seed_instructions() -> list[str]:
    return [line.strip() for line in template("recalpaca_instructions.txt").splitlines() if line.strip()]


# ---------------------------------------------------------------- paraphrases


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1 over lowercase word tokens."""
    x, y = re.findall(r"\w+", a.lower()), re.findall(r"\w+", b.lower())
    if not x or not y:
        return 0.0
    prev = [0] * (len(y) + 1)
    for tok in x:
        cur = [0]
        for j, other in enumerate(y):
            cur.append(prev[j] + 1 if tok == other else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    return 0.0 if lcs == 0 else 2 * lcs / (len(x) + len(y))


def add_distinct(pool: list[str], new: Sequence[str], threshold: float = DUPLICATE_ROUGE) -> list[str]:
    """`pool` plus each new instruction whose ROUGE-L to everything kept stays below `threshold`."""
    kept = list(pool)
    for text in new:
        text = " ".join(str(text).split()).strip("\"' ")
        if 20 <= len(text) <= 300 and all(rouge_l(text, k) < threshold for k in kept):
            kept.append(text)
    return kept


def paraphrase_instructions(teacher, pool: list[str], n_new: int, seed: int, cache=None,
                            rounds: int = 3) -> list[str]:
    """Self-Instruct-style: show 3 pooled instructions, ask for a reworded one, keep distinct ones."""
    from whyrec.llm.client import complete_many

    rng, target = random.Random(seed), len(pool) + n_new
    for _ in range(rounds):
        if len(pool) >= target:
            break
        prompts = [[{"role": "user", "content": fill(template("recalpaca_paraphrase.txt"), examples="\n".join(
            f"- {t}" for t in rng.sample(pool, min(3, len(pool)))))}] for _ in range(target - len(pool))]
        answers = complete_many(teacher, prompts, cache, progress=False, max_tokens=96)
        pool = add_distinct(pool, [a.strip().splitlines()[0] if a.strip() else "" for a in answers])
    return pool[:target]


def instruction_pool(out: Path, teacher, n_paraphrases: int, seed: int, cache) -> list[str]:
    """The pool saved in `out/instruction_pool.json`, or a new one (seeds + paraphrases) saved there."""
    path = out / POOL
    if path.exists():
        pool = read_json(path).get("instructions") or []
        if pool:
            return pool
    pool = seed_instructions()
    if teacher is not None and n_paraphrases > 0:
        pool = paraphrase_instructions(teacher, pool, n_paraphrases, seed, cache)
    write_json(path, {"instructions": pool, "teacher": getattr(teacher, "model", None)})
    return pool
