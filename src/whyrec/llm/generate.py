"""The one generation path: a `GenerationConfig` becomes HF `generate` arguments here, and nowhere else.

Every method decodes through `generate` (XRec, GaVaMoE, RecExplainer, RecAlpaca, PEPLER and the
local chat client), so one setting has one name and one meaning everywhere. XRec's KV-cached
loop that drops finished rows takes its logits processors from `logits_processors`, built from
the same config in the order HF applies them. Inside `whyrec.llm.row_sampling.seeded_rows` both
paths sample each row from its own seeded generator (batch-independent draws).

Which arguments are passed is part of the numbers: greedy decoding sets temperature/top_p/top_k
to None (HF would warn about sampling flags and, for a backbone whose generation_config.json
samples, they must not leak in); sampling passes temperature and top_p and leaves top_k to the
backbone's generation config (HF's default 50), as whyrec always has. `min_new_tokens` is passed
only when > 0: with `input_ids`, HF turns 0 into a `min_length` of the prompt length. `eos_bias`
becomes HF's `sequence_bias` on the one EOS id (and the same processor, first, in the loop's list).
"""

from __future__ import annotations

from typing import Any

from whyrec.config import GenerationConfig


def generate_kwargs(gen: GenerationConfig, tokenizer: Any = None, *, num_return_sequences: int = 1) -> dict:
    """The HF `generate` keyword arguments for `gen`: decoding settings plus pad/eos from `tokenizer`
    (pad falls back to eos when the tokenizer has none, as HF itself does). `num_return_sequences`
    is how many answers the caller wants per prompt (beam search), not a decoding setting."""
    kw: dict[str, Any] = dict(max_new_tokens=gen.max_new_tokens, do_sample=gen.do_sample, num_beams=gen.num_beams,
                              num_return_sequences=num_return_sequences, repetition_penalty=gen.repetition_penalty,
                              no_repeat_ngram_size=gen.no_repeat_ngram_size)
    if gen.min_new_tokens > 0:
        kw["min_new_tokens"] = gen.min_new_tokens
    if gen.do_sample:
        kw.update(temperature=gen.temperature, top_p=gen.top_p)
    else:
        kw.update(temperature=None, top_p=None, top_k=None)
    if tokenizer is not None:
        eos = tokenizer.eos_token_id
        kw.update(pad_token_id=eos if tokenizer.pad_token_id is None else tokenizer.pad_token_id, eos_token_id=eos)
        if gen.eos_bias != 0 and eos is not None:  # absent at 0, so the default call is the one it always was
            kw["sequence_bias"] = {(eos,): float(gen.eos_bias)}
    return kw


def generate(model, gen: GenerationConfig, tokenizer: Any, *, num_return_sequences: int = 1, **inputs):
    """`model.generate(**inputs)` decoded as `gen` says; `inputs` are the model inputs (input_ids and
    attention_mask, or inputs_embeds and attention_mask). Returns HF's output ids: prompt + new
    tokens with input_ids, only the new tokens with inputs_embeds alone.

    With inputs_embeds, HF applies the repetition penalty and n-gram block to the generated tokens
    only and warns about it once per call; that is the intended behaviour here, so the warning is muted.
    """
    import warnings

    kw = generate_kwargs(gen, tokenizer, num_return_sequences=num_return_sequences)
    rows = _row_sampler(gen, lambda: inputs["input_ids"].shape[1] if "input_ids" in inputs else 0)
    if rows is not None:
        # HF puts its own warpers after it; on the forced scores they change nothing.
        from transformers.generation.logits_process import LogitsProcessorList

        kw["logits_processor"] = LogitsProcessorList([rows])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(repetition_penalty|no_repeat_ngram_size).*inputs_embeds.*")
        return model.generate(**inputs, **kw)


def logits_processors(gen: GenerationConfig, eos_token_id: int | None):
    """The processors `generate` would apply for `gen`, for a hand-written decoding loop whose token
    history holds the generated tokens only (as HF's does with inputs_embeds). Beam search is not
    a processor: such a loop must hand `gen.num_beams > 1` to `generate`. The EOS bias comes first,
    where HF puts `sequence_bias`."""
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        MinNewTokensLengthLogitsProcessor,
        NoRepeatNGramLogitsProcessor,
        RepetitionPenaltyLogitsProcessor,
        SequenceBiasLogitsProcessor,
        TemperatureLogitsWarper,
        TopPLogitsWarper,
    )

    procs = LogitsProcessorList()
    if gen.eos_bias != 0 and eos_token_id is not None:
        procs.append(SequenceBiasLogitsProcessor({(eos_token_id,): float(gen.eos_bias)}))
    if gen.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(gen.repetition_penalty))
    if gen.no_repeat_ngram_size > 0:
        procs.append(NoRepeatNGramLogitsProcessor(gen.no_repeat_ngram_size))
    if gen.min_new_tokens > 0 and eos_token_id is not None:
        procs.append(MinNewTokensLengthLogitsProcessor(0, gen.min_new_tokens, eos_token_id))
    if gen.do_sample:
        rows = _row_sampler(gen, lambda: 0)
        procs += [rows] if rows is not None else [TemperatureLogitsWarper(gen.temperature), TopPLogitsWarper(gen.top_p)]
    return procs


def _row_sampler(gen: GenerationConfig, prompt_length):
    """Inside `whyrec.llm.row_sampling.seeded_rows`, a sampled beam-free call draws each row from its
    own seeded generator (batch-independent candidates for `Run`'s grounding-aware decoding);
    `prompt_length()`: the prompt tokens HF's ids start with (asked only then)."""
    if not gen.do_sample or gen.num_beams > 1:
        return None
    from whyrec.llm.row_sampling import active_sampler

    return active_sampler(gen.temperature, gen.top_p, prompt_length())


def plain_greedy(gen: GenerationConfig, method: str) -> GenerationConfig:
    """`gen` for a method that decodes plain greedy (RecExplainer, RecAlpaca: how they are trained and
    evaluated): no repetition penalty (the shared default 1.1 is XRec's), every other setting kept.
    Sampling is refused with a one-line error rather than silently dropped."""
    from dataclasses import replace

    from whyrec.utils import WhyrecError

    if gen.do_sample:
        raise WhyrecError(f"{method} decodes greedily (as it is evaluated); drop --generation.do_sample")
    return replace(gen, repetition_penalty=1.0)
