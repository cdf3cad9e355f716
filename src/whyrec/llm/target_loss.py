"""The causal-LM loss with the LM head run on the target positions only (issue 19 item 3).

HF's `ForCausalLM` forward applies the LM head to every position of every row and upcasts all
of those logits to fp32 before its loss reads the few whose next-token label is not -100. For
SmolLM2 (576 x 49,152 head) on RecAlpaca's micro-batches that is most of a step's LM-head FLOPs
and ~0.4 GB of fp32 logits spent on prompt and padding positions. `target_loss` runs the
decoder body, keeps the positions that predict a label, and applies the head there only: the
same loss value and gradients as the HF loss, as XRec's forward already does.

LoRA layers and PEFT `modules_to_save` wrappers live inside the modules, so calling the inner
decoder and head keeps them active. Architectures whose head does more than a linear map
(Gemma-2's logit soft-capping, Cohere's logit scale, MoE router losses) take HF's own path.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

IGNORE = -100  # transformers' ignore_index


def _causal_lm(model):
    """The HF `...ForCausalLM` inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def head_is_linear(model) -> bool:
    """True when the model's logits are exactly `lm_head(decoder(...).last_hidden_state)`."""
    lm = _causal_lm(model)
    cfg = getattr(lm, "config", None)
    return (hasattr(lm, "get_decoder") and lm.get_output_embeddings() is not None and cfg is not None
            and getattr(cfg, "final_logit_softcapping", None) is None
            and getattr(cfg, "logit_scale", None) is None
            and not getattr(cfg, "output_router_logits", False))


def target_loss(model, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None,
                **inputs) -> torch.Tensor:
    """Next-token cross-entropy of `model` on `inputs`, as `model(**inputs, labels=labels).loss`.

    Args:
        model: a HF causal LM, possibly PEFT-wrapped.
        labels: (B, T) token ids, -100 where no loss is taken; position t predicts labels[:, t+1].
        num_items_in_batch: the Trainer's count of label tokens over the accumulated batch: when
            given the loss is their sum divided by it (as HF's loss does), else the mean.
        **inputs: input_ids or inputs_embeds, attention_mask, position_ids ... for the decoder.

    Returns:
        The scalar loss, fp32 (the head's output is upcast as HF's loss does).
    """
    if not head_is_linear(model):
        kw = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
        return model(**inputs, labels=labels, **kw).loss
    lm = _causal_lm(model)
    hidden = lm.get_decoder()(**inputs, use_cache=False).last_hidden_state  # (B, T, H)
    labels = labels.to(hidden.device)
    predicts = labels[:, 1:] != IGNORE  # (B, T-1): position t predicts labels[:, t+1]
    logits = lm.get_output_embeddings()(hidden[:, :-1][predicts]).float()  # (N, V), N label tokens
    targets = labels[:, 1:][predicts]  # (N,)
    if num_items_in_batch is None:
        return F.cross_entropy(logits, targets)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(logits.device)
    return F.cross_entropy(logits, targets, reduction="sum") / num_items_in_batch
