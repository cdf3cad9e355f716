"""GaVaMoE: Gaussian-Variational Gated Mixture of Experts for explainable recommendation.

Tang, Shen, Zhang, Tan, Zhang, Huang, Song, Lu, Zhuang; arXiv 2410.11841 (METHODS §4).
Stage 1 (`whyrec.encoders.vae_train`) clusters (user, item) pairs with a VAE and a GMM prior.
Stage 2, here: the pair's VAE user/item vectors pass through two linear maps and replace the
embeddings of two placeholder tokens in the prompt; every chosen MLP becomes a `ClusterMoE`
whose router is picked by the pair's cluster; LoRA adapts attention. Experts, routers and
the maps train, everything else is frozen; the loss covers the reply tokens only.

Deviations (METHODS §4.8): upcycled experts (see `adapters/cluster_experts.py`); batches of
any size and order (cluster ids travel with the batch); the ground-truth feature word is left
out of the prompt unless `use_feature=True`; the VAE vectors are inputs, not LoRA-tuned tables.
"""

from __future__ import annotations

import torch
from torch import nn

from whyrec.adapters.cluster_experts import install_cluster_moe, route_by
from whyrec.config import GaVaMoEConfig, GenerationConfig  # noqa: F401 (GaVaMoEConfig re-exported)
from whyrec.llm.collate import encode_batch
from whyrec.llm.generate import generate
from whyrec.llm.precision import keep_trainables_fp32
from whyrec.llm.tokens import add_tokens_mean_init
from whyrec.utils import WhyrecError

USER_TOKEN, ITEM_TOKEN = "<USER_VEC>", "<ITEM_VEC>"


class GaVaMoE(nn.Module):
    """Projections + cluster-routed MoE MLPs + LoRA around a frozen causal LM."""

    def __init__(self, llm, tokenizer, vae_dim: int, n_clusters: int, cfg: GaVaMoEConfig):
        super().__init__()
        if cfg.n_clusters is not None and cfg.n_clusters != n_clusters:
            raise WhyrecError(f"n_clusters={cfg.n_clusters} but the VAE has {n_clusters} clusters")
        self.cfg, self.tokenizer = cfg, tokenizer
        add_tokens_mean_init(llm, tokenizer, [USER_TOKEN, ITEM_TOKEN])
        for p in llm.parameters():
            p.requires_grad_(False)
        if cfg.lora.enabled:
            from peft import LoraConfig as PeftLora
            from peft import get_peft_model

            lc = cfg.lora
            llm = get_peft_model(llm, PeftLora(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                                               target_modules=list(lc.target_modules), bias="none"))
        # After peft: the experts are not LoRA targets, they train in full (paper: modules_to_save).
        self.moes = install_cluster_moe(llm, cfg.n_experts, cfg.top_k, n_clusters, cfg.moe_layers,
                                        cfg.upcycle, cfg.ffn_width)
        for moe in self.moes:
            moe.requires_grad_(True)
        self.llm = llm
        hidden = llm.config.hidden_size
        self.user_proj = nn.Linear(vae_dim, hidden)  # paper: Linear(768 -> 4096) per side
        self.item_proj = nn.Linear(vae_dim, hidden)
        self.token_ids = [tokenizer.convert_tokens_to_ids(t) for t in (USER_TOKEN, ITEM_TOKEN)]
        ref = next(llm.parameters())
        self.user_proj.to(ref.device, ref.dtype)
        self.item_proj.to(ref.device, ref.dtype)
        # On a bf16 backbone (model.dtype auto) the experts and projections learn in fp32
        keep_trainables_fp32(self, llm.get_output_embeddings())

    # ---- prompts -------------------------------------------------------------------
    def prompt(self, title: str, rating: float | None = None, feature: str | None = None, facts: str = "") -> str:
        """Chat prompt: the mood from the rating, the title, the item facts slot when `cfg.item_facts`
        is on (`whyrec.data.item_facts`; "unknown" for an item without facts, as XRec's slot), and
        optionally the feature word. Off (and in folders saved before the field) the prompt is the
        one those folders were trained with.

        An unknown rating counts as positive: a recommended pair is one predicted to be liked.
        """
        noun, cut = self.cfg.item_noun, self.cfg.max_prompt_words
        mood = "negative" if rating is not None and rating == rating and rating < self.cfg.positive_rating else "positive"
        system = "You explain recommendations: in one or two sentences, say what the user would think of it."
        user = f"The user {USER_TOKEN} had a {mood} experience with the {noun} {ITEM_TOKEN}, titled \"{_clip(title, cut)}\"."
        if self.cfg.item_facts:
            user += f" {noun.capitalize()} facts: {_clip(facts, cut)}."
        if self.cfg.use_feature and feature:
            user += f" The {noun} is notable for its {_clip(feature, cut)}."
        user += f" Explain what this user thinks of this {noun}."
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(self, prompts: list[str], targets: list[str] | None = None, max_target_tokens: int = 96,
               side: str = "left") -> dict[str, torch.Tensor]:
        """Token ids, mask and labels (-100 on the prompt and padding); targets end with EOS."""
        return encode_batch(self.tokenizer, prompts, targets, max_target_tokens, side)

    # ---- model ---------------------------------------------------------------------
    def _embeds(self, input_ids, user_vec, item_vec) -> torch.Tensor:
        """Token embeddings with the two placeholders replaced by the projected VAE vectors."""
        emb = self.llm.get_input_embeddings()
        input_ids = input_ids.to(emb.weight.device)
        embeds = emb(input_ids)  # (B, T, H)
        for tok_id, name, proj, vec in ((self.token_ids[0], USER_TOKEN, self.user_proj, user_vec),
                                        (self.token_ids[1], ITEM_TOKEN, self.item_proj, item_vec)):
            hits = input_ids == tok_id  # (B, T)
            counts = hits.sum(1)
            if not bool((counts == 1).all()):
                raise WhyrecError(f"every GaVaMoE prompt needs exactly one {name} token (got counts {counts.tolist()})")
            projected = proj(vec.to(embeds.device, proj.weight.dtype)).to(embeds.dtype)  # (B, H)
            embeds = torch.where(hits.unsqueeze(-1), projected.unsqueeze(1), embeds)  # replace, not add
        return embeds

    def forward(self, input_ids, attention_mask, labels, user_vec, item_vec, cluster_ids) -> torch.Tensor:
        """Mean cross-entropy over the reply tokens of a left-padded batch.

        Left padding puts every reply at the end, so the LM head runs only on the last positions.
        """
        embeds = self._embeds(input_ids, user_vec, item_vec)
        dev = embeds.device
        attention_mask, labels = attention_mask.to(dev), labels.to(dev)
        first_target = int((labels != -100).float().argmax(1).min())
        keep = input_ids.shape[1] - first_target + 1
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # same positions as generation
        with route_by(self.moes, cluster_ids):
            # No KV cache: training never reads it, and under train.compile each layer's cache was a new
            # dynamo guard, so past the recompile limit (8) most layers ran eager.
            out = self.llm(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                           logits_to_keep=keep, use_cache=False)
        logits = out.logits[:, :-1].float()  # (B, keep-1, V) predicts labels[:, -(keep-1):]
        targets = labels[:, -(keep - 1):]
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, user_vec, item_vec, cluster_ids, gen: GenerationConfig) -> list[str]:
        """Batched, KV-cached decoding from left-padded prompts; greedy unless `gen.do_sample`."""
        embeds = self._embeds(input_ids, user_vec, item_vec)
        with route_by(self.moes, cluster_ids):
            out = generate(self.llm, gen, self.tokenizer, inputs_embeds=embeds,
                           attention_mask=attention_mask.to(embeds.device))
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


def _clip(text, words: int) -> str:
    parts = str(text or "").split()
    return " ".join(parts[:words]) if parts else "unknown"
