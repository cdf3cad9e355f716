"""Pad prompt(+target) token lists into a batch; labels mask the prompt and the padding."""

from __future__ import annotations

import torch

IGNORE = -100


def pad_batch(prompts: list[list[int]], targets: list[list[int]] | None, pad_id: int,
              side: str = "right") -> dict[str, torch.Tensor]:
    """Concatenate prompt and target ids per row and pad.

    Labels are IGNORE on prompt tokens and padding, so the loss comes only from targets.
    Left padding is for generation (new tokens append on the right), right for training.
    """
    targets = targets or [[] for _ in prompts]
    rows = [p + t for p, t in zip(prompts, targets)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for b, (p, t) in enumerate(zip(prompts, targets)):
        n = len(p) + len(t)
        start = width - n if side == "left" else 0
        ids[b, start:start + n] = torch.tensor(p + t)
        mask[b, start:start + n] = 1
        if t:
            labels[b, start + len(p):start + n] = torch.tensor(t)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def encode_batch(tokenizer, prompts: list[str], targets: list[str] | None = None, max_target_tokens: int = 96,
                 side: str = "left") -> dict[str, torch.Tensor]:
    """Tokenise prompts (+ targets cut to `max_target_tokens`, ending with EOS) and pad them."""
    p_ids = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    t_ids = None
    if targets is not None:
        t_ids = [tokenizer(t.strip(), add_special_tokens=False).input_ids[:max_target_tokens]
                 + [tokenizer.eos_token_id] for t in targets]
    return pad_batch(p_ids, t_ids, tokenizer.pad_token_id, side=side)


def length_bucketed_order(lengths: list[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffle, then sort within windows of 50 batches so each batch has similar lengths.

    Cuts padding waste on CPU while keeping the epoch order random.
    """
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * 50
    batches = []
    for s in range(0, len(perm), window):
        chunk = sorted(perm[s:s + window], key=lambda i: lengths[i])
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


def token_budget_order(lengths: list[int], max_tokens: int, window: int,
                       generator: torch.Generator) -> list[list[int]]:
    """Like `length_bucketed_order`, but each batch takes as many rows as fit in `max_tokens`
    padded tokens (rows x its longest row) instead of a fixed count.

    A step then costs about the same whatever the lengths: short rows fill a batch with more of
    them, long ones with fewer, and the matmuls stay as large as the budget allows. Rows are
    shuffled, sorted within windows of `window` rows and cut greedily in that order; a row
    longer than the budget forms a batch alone. Deterministic given the generator's seed.
    """
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    batches: list[list[int]] = []
    for s in range(0, len(perm), window):
        batch: list[int] = []
        for i in sorted(perm[s:s + window], key=lambda i: lengths[i]):
            # sorted ascending, so row i is the longest of batch + [i]
            if batch and (len(batch) + 1) * lengths[i] > max_tokens:
                batches.append(batch)
                batch = []
            batch.append(i)
        batches.append(batch)
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]
