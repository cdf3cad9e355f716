"""XRec's own decoding loop: continuous batching (`whyrec.llm.continuous`) with the shared prompt
prefix prefilled once.

Every XRec prompt opens with the same tokens: the chat template's header, the system prompt and
"user record: ". Those are prefilled once per call and their KV cache copied into each prefill
group, so each row prefills only its own suffix. The prefix ends before `<USER_EMBED>`, the first
position the q/k/v injection and the embedding replacement touch, so what it caches is what every
row would compute for those positions on its own.

`decode_rows` serves the offline path (a fixed list of prompts, `XRec.generate_ids`); `stream`
serves the HTTP server: rows come from a `pull(free_slots)` callable while decoding goes on, and
each explanation is handed back the moment its row ends.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch

from whyrec.config import GenerationConfig


def prefix_ids(module) -> list[int] | None:
    """The token ids every prompt of `module` starts with, up to (not including) `<USER_EMBED>`;
    None when prefix reuse is off (`module.reuse_prefix`) or the template puts nothing before it."""
    if not getattr(module, "reuse_prefix", True):
        return None
    # The row's own text (title, profiles) comes after <USER_EMBED>, so any row shows the prefix.
    probe = module.encode([module.prompt("x", "", "")], side="left")["input_ids"][0].tolist()
    user_token = module.token_ids[0]
    if user_token not in probe:
        return None
    cut = probe.index(user_token)
    return probe[:cut] if cut > 0 else None


def shared_prefix(module):
    from whyrec.llm.continuous import SharedPrefix

    ids = prefix_ids(module)
    # Prefilled per call, not kept: LoRA weights change during training, and a call is long
    # enough that one forward over ~30 tokens is noise.
    return SharedPrefix(module.llm, ids) if ids else None


def _prepare(module, vectors: Callable[[list], tuple[torch.Tensor, torch.Tensor]]):
    def prepare(rows, ids):
        user_vec, item_vec = vectors(rows)
        embeds, positions, vecs = module._inputs(ids, user_vec, item_vec)
        return {"inputs_embeds": embeds}, module._injecting(positions, vecs, ids.shape[1])

    return prepare


def decode_rows(module, input_ids, attention_mask, user_vec, item_vec, gen: GenerationConfig) -> list[list[int]]:
    """New token ids for every left-padded prompt row (see `XRec._decode`)."""
    from whyrec.llm.continuous import decode_continuously, hf_prefill, hf_step
    from whyrec.llm.generate import logits_processors

    prepare = _prepare(module, lambda rows: (user_vec[rows], item_vec[rows]))
    prefill = hf_prefill(module.llm, input_ids, attention_mask, prepare, shared_prefix(module))
    eos = module.tokenizer.eos_token_id
    return decode_continuously(len(input_ids), prefill, hf_step(module.llm), logits_processors(gen, eos),
                               gen.max_new_tokens, eos, gen.batch_size, do_sample=gen.do_sample)


def clean(module, ids: list[int]) -> str:
    # Small backbones sometimes open with the prompt's trailing punctuation (": ...").
    return module.tokenizer.decode(ids, skip_special_tokens=True).strip().lstrip(":;,.- ").strip()


Row = tuple[Hashable, str, torch.Tensor, torch.Tensor]  # (key, prompt, user vector, item vector)


def stream(module, pull: Callable[[int], list[Row]], deliver: Callable[[Hashable, object], None],
           gen: GenerationConfig, on_prefill: Callable[[int], None] | None = None) -> None:
    """Explain rows as `pull(free_slots)` hands them over until it gives none and nothing decodes;
    `deliver(key, text)` as each row ends, `deliver(key, exception)` for a row that cannot be
    prepared (the others go on). Keys must be unique among the rows in flight."""
    from whyrec.llm.continuous import decode_stream, hf_step, prefill_rows
    from whyrec.llm.continuous_rows import pull_rows
    from whyrec.llm.generate import logits_processors

    rows: dict[Hashable, tuple[list[int], torch.Tensor, torch.Tensor]] = {}
    tok = module.tokenizer

    def admit(request: tuple) -> Hashable | None:
        key, prompt, user_vec, item_vec = request
        ids = module.encode([prompt], side="left")["input_ids"][0].tolist()
        if ids.count(module.token_ids[0]) != 1 or ids.count(module.token_ids[1]) != 1:
            deliver(key, ValueError(f"the prompt of {key!r} does not hold one <USER_EMBED> and one <ITEM_EMBED>"))
            return None
        rows[key] = (ids, user_vec, item_vec)
        return key

    def take(free: int) -> list[Hashable]:
        return pull_rows(pull, free, admit)

    def vectors(keys):
        return (torch.stack([rows[k][1] for k in keys]), torch.stack([rows[k][2] for k in keys]))

    def done(key, ids: list[int]) -> None:
        rows.pop(key, None)
        deliver(key, clean(module, ids))

    prefill = prefill_rows(module.llm, lambda keys: [rows[k][0] for k in keys], _prepare(module, vectors),
                           shared_prefix(module), pad_id=tok.pad_token_id or 0)
    eos = tok.eos_token_id
    decode_stream(take, prefill, hf_step(module.llm), logits_processors(gen, eos), gen.max_new_tokens, eos,
                  gen.batch_size, do_sample=gen.do_sample, on_row_done=done, on_prefill=on_prefill)
