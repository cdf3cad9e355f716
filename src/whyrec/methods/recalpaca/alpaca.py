"""The Alpaca prompt template and response-only label masking (RecAlpaca, METHODS §6.1).

RecAlpaca fine-tunes with the Alpaca-LoRA recipe: every example is rendered with the
Stanford Alpaca template (a variant without the "### Input:" block when the input is
empty) and, with `train_on_inputs=False`, the loss covers the response only.

`tokenize_example` tokenises the prompt and the response separately and concatenates the
ids. Alpaca-LoRA instead tokenises the prompt alone and the whole text, then masks
`len(prompt_ids)` tokens; with BPE the two tokenisations can disagree at the boundary,
so the mask could be off by a token. Concatenating makes the mask exact.
"""

from __future__ import annotations

from collections.abc import Mapping

IGNORE_INDEX = -100  # labels with this value are skipped by torch's cross-entropy

PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
RESPONSE_MARKER = "### Response:"


def render_prompt(instruction: str, input: str | None = None) -> str:  # noqa: A002 (Alpaca's field name)
    """The Alpaca prompt up to and including "### Response:\\n"; no input block if `input` is blank.

    `str.replace` rather than `str.format`, so braces inside movie titles stay literal.
    """
    if input is not None and input.strip():
        return PROMPT_WITH_INPUT.replace("{instruction}", instruction, 1).replace("{input}", input, 1)
    return PROMPT_NO_INPUT.replace("{instruction}", instruction, 1)


def render_example(record: Mapping) -> tuple[str, str]:
    """(prompt, response) of an Alpaca record with `instruction`, optional `input`, `output`."""
    return render_prompt(record["instruction"], record.get("input")), str(record.get("output", ""))


def response_of(generated: str) -> str:
    """The text after the last "### Response:" marker of a decoded generation (all of it if absent)."""
    return generated.rsplit(RESPONSE_MARKER, 1)[-1].strip()


def tokenize_example(tokenizer, record: Mapping, cutoff_len: int = 512, add_eos: bool = True,
                     train_on_inputs: bool = False) -> dict[str, list[int]]:
    """input_ids, attention_mask and labels of one Alpaca record for causal-LM training.

    Args:
        tokenizer: any HF tokenizer; special tokens (e.g. BOS) are added to the prompt only.
        record: `instruction`, optional `input`, `output`.
        cutoff_len: keep at most this many tokens, cut on the right as Alpaca-LoRA does.
            RecAlpaca used 128, which cuts ML-100K prompts (450-550 tokens) before the
            response even starts; such rows then carry no loss at all.
        add_eos: end the response with the EOS token so the model learns to stop.
        train_on_inputs: also put the loss on the prompt (RecAlpaca: False).

    Labels are IGNORE_INDEX exactly on the prompt tokens unless `train_on_inputs`.
    """
    prompt, response = render_example(record)
    prompt_ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    response_ids = list(tokenizer(response, add_special_tokens=False)["input_ids"])
    if add_eos and tokenizer.eos_token_id is not None:
        response_ids.append(tokenizer.eos_token_id)
    ids = (prompt_ids + response_ids)[:cutoff_len]
    prompt_labels = list(prompt_ids) if train_on_inputs else [IGNORE_INDEX] * len(prompt_ids)
    labels = (prompt_labels + response_ids)[:cutoff_len]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}
