"""New placeholder tokens for methods that inject vectors at their positions (XRec, GaVaMoE, RecExplainer)."""

from __future__ import annotations

import torch

from whyrec.llm.load import contiguous_head_input


def add_tokens_mean_init(llm, tokenizer, tokens: list[str], additional_special: bool = False) -> None:
    """Add `tokens` to the tokenizer and the model; new rows are the mean row, so a rebuild is identical.

    `additional_special` registers them as the tokenizer's additional special tokens (XRec's way);
    otherwise they are added as special tokens that decoding skips.
    """
    new = [t for t in tokens if t not in tokenizer.get_vocab()]
    if not new:
        return
    if additional_special:
        tokenizer.add_special_tokens({"additional_special_tokens": list(tokens)})
    else:
        tokenizer.add_tokens(new, special_tokens=True)
    old = llm.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > old:
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        contiguous_head_input(llm)  # an untied head is a new module after resizing
        with torch.no_grad():
            emb = llm.get_input_embeddings().weight
            emb[old:] = emb[:old].mean(0)
            out = llm.get_output_embeddings()
            if out is not None and out.weight is not emb:  # untied head: its rows too
                out.weight[old:] = out.weight[:old].mean(0)
