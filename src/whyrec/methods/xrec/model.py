"""XRec: Large Language Models for Explainable Recommendation (Ma, Ren, Huang; EMNLP 2024).

LightGCN user/item vectors -> two MoE adapters -> a frozen causal LM. The adapted vectors
replace the embeddings of `<USER_EMBED>`/`<ITEM_EMBED>` and are added to q/k/v at those
positions in every attention layer (prefill only). Only the adapters train (optionally
LoRA too, beyond the paper). See METHODS §3.2-3.4 and the README for the deviations:
the explanation is the assistant turn of the model's own chat template (XRec put it inside
`[INST]`), `<EXPLAIN_POS>` closes the user turn, and the loss covers the reply only.
"""

from __future__ import annotations

import torch
from torch import nn

from whyrec.adapters.moe_tokens import MoEAdaptor
from whyrec.adapters.qkv_injection import QKVInjector, kv_width, q_width
from whyrec.config import GenerationConfig, XRecConfig
from whyrec.llm.collate import encode_batch
from whyrec.llm.generate import generate
from whyrec.llm.tokens import add_tokens_mean_init

USER_TOKEN, ITEM_TOKEN, EXPLAIN_TOKEN = "<USER_EMBED>", "<ITEM_EMBED>", "<EXPLAIN_POS>"
SPECIAL_TOKENS = [USER_TOKEN, ITEM_TOKEN, EXPLAIN_TOKEN]


def add_special_tokens(llm, tokenizer) -> None:
    """Add XRec's tokens (new embedding rows = the mean row, so reloads are identical)."""
    add_tokens_mean_init(llm, tokenizer, SPECIAL_TOKENS, additional_special=True)


class XRec(nn.Module):
    """Adapters + injection around a frozen causal LM. Build with `XRec.build`."""

    reuse_prefix = True  # decoding prefills the prompt prefix every row shares once (off: the whole prompt per row)

    def __init__(self, llm, tokenizer, encoder_dim: int, cfg: XRecConfig):
        super().__init__()
        self.cfg, self.tokenizer = cfg, tokenizer
        add_special_tokens(llm, tokenizer)
        for p in llm.parameters():
            p.requires_grad_(False)
        if cfg.lora.enabled:
            llm = _wrap_lora(llm, cfg)
        self.llm = llm
        conf = llm.config
        hidden = conf.hidden_size
        self.user_adapter = MoEAdaptor(encoder_dim, hidden, cfg.n_exps, cfg.dropout, cfg.noisy_gate)
        self.item_adapter = MoEAdaptor(encoder_dim, hidden, cfg.n_exps, cfg.dropout, cfg.noisy_gate)
        # Grouped-query attention: k/v are narrower than the hidden size, so learn a map to them.
        self.kv_proj = nn.Linear(hidden, kv_width(conf), bias=False) if kv_width(conf) != hidden else None
        self.q_proj = nn.Linear(hidden, q_width(conf), bias=False) if q_width(conf) != hidden else None
        for proj in (self.kv_proj, self.q_proj):
            if proj is not None:
                nn.init.normal_(proj.weight, std=hidden ** -0.5)
        self.injector = QKVInjector(llm, conf.model_type, self.kv_proj, self.q_proj) if cfg.inject_qkv else None
        self.token_ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
        self.to(next(llm.parameters()).device)

    # ---- prompts -------------------------------------------------------------------
    def prompt(self, title: str, user_profile: str, item_profile: str, facts: str = "") -> str:
        """The chat prompt of one pair. `facts` (`whyrec.data.item_facts`) fills the "{noun} facts:"
        slot when `cfg.item_facts` is on; off (and in folders saved before the field), it is unused
        and the prompt is the one those folders were trained with."""
        noun, cut = self.cfg.item_noun, self.cfg.max_prompt_words
        system = f"Explain why the user would enjoy the {noun} within 50 words."
        slot = f"{noun} facts: {_clip(facts, cut)} " if self.cfg.item_facts else ""
        # <EXPLAIN_POS> closes the user turn: the reply then starts from the model's own assistant
        # header, so an untrained adapter leaves the backbone's chat behaviour intact.
        user = (f"user record: {USER_TOKEN} {noun} record: {ITEM_TOKEN} {noun} name: {title} {slot}"
                f"user profile: {_clip(user_profile, cut)} {noun} profile: {_clip(item_profile, cut)} {EXPLAIN_TOKEN}")
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(self, prompts: list[str], targets: list[str] | None = None, max_target_tokens: int = 96,
               side: str = "left") -> dict[str, torch.Tensor]:
        return encode_batch(self.tokenizer, prompts, targets, max_target_tokens, side)

    # ---- model ---------------------------------------------------------------------
    def _inputs(self, input_ids, user_vec, item_vec):
        """Replace the special-token embeddings; return (inputs_embeds, positions, vectors)."""
        dev = self.llm.get_input_embeddings().weight.device
        input_ids = input_ids.to(dev)
        embeds = self.llm.get_input_embeddings()(input_ids)  # (B, T, H)
        u = self.user_adapter(user_vec.to(dev))  # (B, H)
        i = self.item_adapter(item_vec.to(dev))
        pos_u = _single_position(input_ids, self.token_ids[0], USER_TOKEN)
        pos_i = _single_position(input_ids, self.token_ids[1], ITEM_TOKEN)
        positions = torch.stack([pos_u, pos_i], dim=1)  # (B, 2)
        vectors = torch.stack([u, i], dim=1).to(embeds.dtype)  # (B, 2, H)
        rows = torch.arange(len(input_ids), device=dev).unsqueeze(1).expand_as(positions)
        embeds = embeds.index_put((rows, positions), vectors)  # replace, not add (XRec)
        return embeds, positions, vectors

    def forward(self, input_ids, attention_mask, labels, user_vec, item_vec) -> torch.Tensor:
        """Mean token cross-entropy on the explanation tokens.

        The decoder runs on the whole sequence, but the LM head (a 49k x 576 matmul for SmolLM2,
        then a 49k-wide log-softmax) only on the positions whose next token is a target: not on
        the prompt, which is most of the sequence, nor on the padding of shorter targets.
        """
        embeds, positions, vectors = self._inputs(input_ids, user_vec, item_vec)
        dev = embeds.device
        attention_mask, labels = attention_mask.to(dev), labels.to(dev)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # same positions as generation
        predicts = labels[:, 1:] != -100  # (B, T-1): position t predicts labels[:, t+1]
        lm = self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm  # under LoRA
        with self._injecting(positions, vectors, None):  # no cache: every forward is the full sequence
            hidden = lm.get_decoder()(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                                      use_cache=False).last_hidden_state  # (B, T, H)
        logits = lm.get_output_embeddings()(hidden[:, :-1][predicts]).float()  # (n_targets, V)
        return torch.nn.functional.cross_entropy(logits, labels[:, 1:][predicts])

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, user_vec, item_vec, gen: GenerationConfig) -> list[str]:
        """Batched, KV-cached decoding from left-padded prompts."""
        ids = self.generate_ids(input_ids, attention_mask, user_vec, item_vec, gen)
        # Small backbones sometimes open with the prompt's trailing punctuation (": ...").
        return [t.strip().lstrip(":;,.- ").strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    @torch.no_grad()
    def generate_ids(self, input_ids, attention_mask, user_vec, item_vec, gen: GenerationConfig) -> list[list[int]]:
        """New token ids per row, up to and including its first EOS. Any number of rows: at most
        `gen.batch_size` decode at once, and a finished row's slot goes to the next waiting one."""
        if gen.drop_finished and gen.num_beams == 1:  # beam search is HF's alone
            return self._decode(input_ids, attention_mask, user_vec, item_vec, gen)
        embeds, positions, vectors = self._inputs(input_ids, user_vec, item_vec)
        attention_mask = attention_mask.to(embeds.device)
        # With inputs_embeds the repetition penalty covers generated tokens only, so explanations
        # may still quote titles and words from the prompt. Beam search prefills each row num_beams
        # times (repeat_interleave), so the injected vectors are repeated the same way.
        beams = gen.num_beams
        positions, vectors = positions.repeat_interleave(beams, 0), vectors.repeat_interleave(beams, 0)
        with self._injecting(positions, vectors, input_ids.shape[1]):
            out = generate(self.llm, gen, self.tokenizer, inputs_embeds=embeds, attention_mask=attention_mask)
        return [_until_eos(row, self.tokenizer.eos_token_id) for row in out.tolist()]

    def _decode(self, input_ids, attention_mask, user_vec, item_vec, gen: GenerationConfig) -> list[list[int]]:
        """HF `generate`'s greedy/sampling loop (the same logits processors, from `whyrec.llm.generate`,
        positions and masks) with continuous batching (`whyrec.llm.continuous`): a row leaves the
        batch and the KV cache at its EOS and a waiting row takes its place, prefilled with its own
        adapter vectors injected. The prompt prefix all rows share is prefilled once (`decode.py`)."""
        from whyrec.methods.xrec.decode import decode_rows

        return decode_rows(self, input_ids, attention_mask, user_vec, item_vec, gen)

    def _injecting(self, positions, vectors, seq_len):
        if self.injector is None:
            from contextlib import nullcontext

            return nullcontext()
        return self.injector.active(positions, vectors, seq_len)

    def merge_lora(self) -> int:
        """Fold the LoRA deltas into the backbone's projections and drop peft's wrappers, for
        inference: each decode step then runs plain Linear layers, without the extra low-rank
        matmuls and peft's Python dispatch per projection. Returns the number of layers merged
        (0 without LoRA). Not for training: the merged model has no LoRA left to train or save.

        Merging replaces the wrapper modules the q/k/v hooks sit on, so the injector is rebuilt on
        the live projections (same k/v and q maps)."""
        if not hasattr(self.llm, "get_base_model"):  # no LoRA (no peft wrapper), or merged already
            return 0
        self.llm, merged = _merge_lora(self.llm)
        if self.injector is not None:
            self.injector.remove()
            self.injector = QKVInjector(self.llm, self.llm.config.model_type, self.kv_proj, self.q_proj)
        return merged

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The XRec-specific weights (adapters and k/v maps), without LoRA or the LLM."""
        keep = ("user_adapter.", "item_adapter.", "kv_proj.", "q_proj.")
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if k.startswith(keep)}


def _single_position(input_ids: torch.Tensor, token_id: int, name: str) -> torch.Tensor:
    hits = input_ids == token_id
    counts = hits.sum(1)
    if not bool((counts == 1).all()):
        bad = int((counts != 1).nonzero()[0])
        raise ValueError(f"row {bad} has {int(counts[bad])} {name} tokens; XRec prompts need exactly one")
    return hits.float().argmax(1)


def _until_eos(row: list[int], eos: int) -> list[int]:
    return row[:row.index(eos) + 1] if eos in row else row


def _clip(text: str, words: int) -> str:
    parts = str(text or "").split()
    return " ".join(parts[:words]) if parts else "unknown"


def _wrap_lora(llm, cfg: XRecConfig):
    from peft import LoraConfig, get_peft_model

    lc = cfg.lora
    return get_peft_model(llm, LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                                          target_modules=list(lc.target_modules), bias="none"))


@torch.no_grad()
def _merge_lora(peft_model) -> tuple[nn.Module, int]:
    """(the base model with every LoRA delta added to its weights, layers merged).

    The delta is summed in fp32 and the sum cast once to the frozen weight's dtype: peft's own merge
    rounds the delta to that dtype first and adds in it, two roundings on a bf16 backbone."""
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer
    from peft.utils import transpose

    merged = 0
    for layer in peft_model.modules():
        if not isinstance(layer, LoraLayer) or layer.merged:
            continue
        weight = layer.get_base_layer().weight
        delta = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        for name in layer.active_adapters:
            if name not in layer.scaling:
                continue
            if isinstance(layer, LoraLinear):  # B @ A in fp32 whatever the adapter's own dtype
                ab = layer.lora_B[name].weight.float() @ layer.lora_A[name].weight.float()
                delta += transpose(ab, layer.fan_in_fan_out) * layer.scaling[name]
            else:  # other layer kinds (e.g. embeddings, if targeted): peft's delta
                delta += layer.get_delta_weight(name).float()
        weight.copy_((weight.float() + delta).to(weight.dtype))
        merged += 1
    return peft_model.unload(), merged  # unload: the wrappers go, the (now merged) base layers stay
