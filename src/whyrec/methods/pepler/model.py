"""PEPLER's model: the MLP rating head, the discrete (feature-word) prompt and the `PEPLER` module.

Package overview and the three variants: `whyrec.methods.pepler`.
"""

from __future__ import annotations

import torch
from torch import nn

from whyrec.config import GenerationConfig, PEPLERConfig
from whyrec.llm.collate import IGNORE, pad_batch
from whyrec.llm.generate import generate


class MLPRating(nn.Module):
    """PEPLER's MLP rating head: [u;i] -> Linear+sigmoid -> 2 x (Linear+sigmoid) -> Linear 1."""

    def __init__(self, hidden: int, width: int = 400, layers: int = 2):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(2 * hidden, width)] + [nn.Linear(width, width) for _ in range(layers)])
        self.last = nn.Linear(width, 1)
        for lin in [*self.layers, self.last]:
            nn.init.uniform_(lin.weight, -0.1, 0.1)
            nn.init.zeros_(lin.bias)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        x = torch.cat([u, i], dim=-1)  # (B, 2H)
        for lin in self.layers:
            x = torch.sigmoid(lin(x))
        return self.last(x).squeeze(-1)  # (B,)


def discrete_prompt(user_feats: set[str], item_feats: set[str], dedup: bool = False) -> list[str]:
    """PEPLER's feature-word prompt: intersection, then `ufea | ifea - inter` (= the union)."""
    inter = user_feats & item_feats
    rest = (user_feats | item_feats) - inter if dedup else user_feats | (item_feats - inter)
    return sorted(inter) + sorted(rest)


class PEPLER(nn.Module):
    """A causal LM with PEPLER's prompt (and rating head for 'reg')."""

    def __init__(self, llm, tokenizer, n_users: int, n_items: int, cfg: PEPLERConfig):
        super().__init__()
        self.llm, self.tokenizer, self.cfg = llm, tokenizer, cfg
        hidden = llm.config.hidden_size
        self.soft = cfg.variant != "discrete"
        if self.soft:
            self.user_emb, self.item_emb = nn.Embedding(n_users, hidden), nn.Embedding(n_items, hidden)
            for emb in (self.user_emb, self.item_emb):
                nn.init.uniform_(emb.weight, -0.1, 0.1)
        self.rating = None
        if cfg.variant == "reg":
            self.rating = MLPRating(hidden, cfg.mlp_hidden) if cfg.rating_head == "mlp" else None
        tok = tokenizer
        # Models without a bos token (e.g. Qwen) start the explanation with eos instead.
        self.bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        self.eos, self.pad = tok.eos_token_id, tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.to(next(llm.parameters()).device)

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    # ---- text --------------------------------------------------------------------
    def text_ids(self, text: str) -> list[int]:
        """The first `words` tokens of an explanation (PEPLER truncates the references the same way)."""
        return self.tokenizer(" " + str(text).strip(), add_special_tokens=False).input_ids[: self.cfg.words]

    def feature_ids(self, words: list[str]) -> list[int]:
        if not words:
            return []
        return self.tokenizer(" ".join(words), add_special_tokens=False).input_ids[: self.cfg.words]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    # ---- model -------------------------------------------------------------------
    def _embed(self, users, items, ids, mask, labels=None):
        """Word embeddings with the two ID vectors prepended for the soft-prompt variants."""
        dev = self.device
        embeds, mask = self.llm.get_input_embeddings()(ids.to(dev)), mask.to(dev)  # (B, T, H)
        labels = labels.to(dev) if labels is not None else None
        if self.soft:
            u, i = self.user_emb(users.to(dev)), self.item_emb(items.to(dev))  # (B, H)
            embeds = torch.cat([u[:, None], i[:, None], embeds.to(u.dtype)], 1).to(embeds.dtype)  # (B, 2+T, H)
            mask = torch.cat([mask.new_ones(len(mask), 2), mask], 1)
            if labels is not None:
                labels = torch.cat([labels.new_full((len(labels), 2), IGNORE), labels], 1)
        return embeds, mask, labels

    def predict_rating(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Unclipped rating predictions (reg only)."""
        u, i = self.user_emb(users.to(self.device)), self.item_emb(items.to(self.device))
        return self.rating(u, i) if self.rating is not None else (u * i).sum(-1)

    def losses(self, users, items, prompts: list[list[int]], texts: list[list[int]], ratings=None):
        """(text CE, rating MSE or None) for one batch; prompts are feature ids ([] if soft)."""
        enc = pad_batch(prompts, [[self.bos, *t, self.eos] for t in texts], self.pad, side="right")
        embeds, mask, labels = self._embed(users, items, enc["input_ids"], enc["attention_mask"], enc["labels"])
        text = self.llm(inputs_embeds=embeds, attention_mask=mask, labels=labels, use_cache=False).loss
        if self.cfg.variant != "reg" or ratings is None:
            return text, None
        pred = self.predict_rating(users, items)
        return text, nn.functional.mse_loss(pred, ratings.to(pred.device, pred.dtype))

    def objective(self, text: torch.Tensor, rating: torch.Tensor | None) -> torch.Tensor:
        if rating is None:
            return text
        return self.cfg.text_reg * text + self.cfg.rating_reg * rating

    @torch.no_grad()
    def generate_ids(self, users, items, prompts: list[list[int]]) -> list[list[int]]:
        """Greedy, KV-cached decoding of at most `words` tokens from `[prompt] <bos>`; cut at eos.

        PEPLER decodes this way by design (its paper's fixed-length greedy decode, `--pepler.words`),
        so it takes no GenerationConfig from the caller; the one it builds goes through the same
        `whyrec.llm.generate` as every other method."""
        enc = pad_batch([[*p, self.bos] for p in prompts], None, self.pad, side="left")
        embeds, mask, _ = self._embed(users, items, enc["input_ids"], enc["attention_mask"])
        gen = GenerationConfig(max_new_tokens=self.cfg.words, repetition_penalty=1.0)  # greedy
        out = generate(self.llm, gen, self.tokenizer, inputs_embeds=embeds, attention_mask=mask)
        # With only inputs_embeds, generate returns just the new tokens.
        return [seq[: seq.index(self.eos)] if self.eos in seq else seq for seq in out.tolist()]

    def extra_state(self) -> dict[str, torch.Tensor]:
        """The PEPLER-specific weights (ID prompts, rating head), without the LM."""
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if not k.startswith("llm.")}

    def set_phase(self, train_lm: bool) -> None:
        """Phase 1 freezes the LM (prompt only); phase 2, discrete and reg train everything."""
        for p in self.llm.parameters():
            p.requires_grad_(train_lm)

