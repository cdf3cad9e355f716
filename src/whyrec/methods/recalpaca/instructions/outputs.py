"""The output of a RecAlpaca example: a teacher's checked answer, or a grounded one from the data.

A teacher (any `whyrec.llm.client` chat client) answers the prompt, told which candidates the
user later liked; an answer is dropped when it names a movie outside the candidates, names a
test title, or names too few. Without a teacher, the grounded answer lists the top-1 and the
targets (then the best-scored other candidates not known to be disliked) with
`whyrec.data.grounded` reasons, which cite only true shared directors, cast or genres with
the user's liked history movies. Either way the result is a dict to merge into the record,
or a string saying why the user is skipped.
"""

from __future__ import annotations

from whyrec.data import schema as S
from whyrec.data.grounded import UserEvidence, explain_pair, pair_rng
from whyrec.methods.recalpaca.instructions.examples import ExampleContext
from whyrec.methods.recalpaca.instructions.prompts import LIKED_MIN, N_CHOICES, fill, template
from whyrec.methods.recalpaca.instructions.titles import mentions, parse_choices


def teacher_messages(ex: dict) -> list[dict]:
    """The chat asking the teacher for `N_CHOICES` candidates with one reason each."""
    known = ", ".join(repr(t) for t in ex["targets"])
    text = template("recalpaca_teacher.txt")
    if not known:  # nothing known: drop the hint line
        text = "\n".join(line for line in text.splitlines() if "{known}" not in line) + "\n"
    text = fill(text, instruction=ex["instruction"], input=ex["input"].strip(), known=known,
                n_choices=str(N_CHOICES), top1=ex["top1"])
    return [{"role": "user", "content": text}]


def check_teacher_answer(ex: dict, answer: str, min_choices: int) -> dict | str:
    """Keep an answer only if every listed movie is a candidate and enough are listed."""
    chosen, outside = parse_choices(answer, ex["candidates"])
    if outside:
        return "outside_candidates"
    if mentions(answer, ex.get("_banned_titles", ())):
        return "names_test_item"
    if len(chosen) < min_choices:
        return "too_few_choices"
    items = [ex["candidate_items"][i] for i in chosen]
    return {"output": answer.strip(), "chosen": [ex["candidates"][i] for i in chosen], "chosen_items": items,
            "source": "teacher"}


def grounded_output(ctx: ExampleContext, ex: dict) -> dict | str:
    """Top-1, then the held-out liked candidates, then the best-scored others not known disliked."""
    if not ex["target_items"]:
        return "no_heldout_liked_candidate"
    hist = ex["_hist"]
    ranked, held = ex["_ranked"], ex["_held"]
    order = [ex["top1_item"]] + [i for i in ex["target_items"] if i != ex["top1_item"]]
    order += [i for i in ranked if i not in order and held.get(i, LIKED_MIN) >= 3]
    chosen = order[:N_CHOICES]
    liked = hist[hist[S.RATING] >= LIKED_MIN]
    ev = UserEvidence(list(zip(liked[S.ITEM], liked[S.RATING], strict=True)), list(hist[S.ITEM]), ctx.facts)
    lines, reasons = [], []
    for k, item in enumerate(chosen, 1):
        why = explain_pair(ev, item, pair_rng(ctx.seed, ex["user"], item))
        lines.append(f"{k}. {ctx.titles[item]}: {why.text}")
        reasons.append({"item": item, "kind": why.kind, "evidence": list(why.evidence), "shared": list(why.shared)})
    head = "Based on the movies the user rated, these are the 5 movies they are most likely to enjoy:"
    return {"output": head + "\n" + "\n".join(lines), "chosen": [ctx.titles[i] for i in chosen],
            "chosen_items": chosen, "reasons": reasons, "source": "grounded"}
