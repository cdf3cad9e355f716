"""`LocalHFClient`: a `whyrec.llm.client.ChatClient` on a local HF causal LM (re-exported there).

The model's chat template, left-padded batches and `whyrec.llm.generate`: greedy by default (LLM
judges, teacher profiles), or decoded as a whole GenerationConfig says (`for_generation`: the
benchmark's zero-shot row), with the settings it cannot honour refused in one line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

from whyrec.config import GenerationConfig, ModelConfig
from whyrec.llm.generate import generate
from whyrec.utils import WhyrecError

Messages = list[dict[str, str]]


class LocalHFClient:
    """Chat with a local HF causal LM: its chat template, left-padded batches, greedy decoding
    (`for_generation`: decoded as a GenerationConfig says)."""

    # GenerationConfig fields it cannot honour, and why (`check_generation` refuses them)
    REFUSED = {"candidates": "it answers each conversation once and has no dataset to check candidates "
                             "against (grounding-aware decoding is for trained runs)",
                "select": "it makes no candidates to choose among"}

    def __init__(self, model: ModelConfig, max_tokens: int = 256, batch_size: int = 8,
                 repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0):
        self.model_config = model
        self.model = model.name_or_path
        self.backend_id = "local"
        self.max_tokens, self.batch_size = max_tokens, max(1, batch_size)
        # Small models (SmolLM2-135M) loop under plain greedy decoding; these two HF
        # generate() options break the loops without giving up determinism.
        self.repetition_penalty, self.no_repeat_ngram_size = repetition_penalty, no_repeat_ngram_size
        # Every other decoding setting stays at its greedy no-op unless `for_generation` sets it.
        self.decoding = GenerationConfig(max_new_tokens=max_tokens, batch_size=self.batch_size,
                                         repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size)
        self._loaded = None
        self._weights: dict | None = None

    @classmethod
    def check_generation(cls, gen: GenerationConfig) -> None:
        """One-line WhyrecError if `gen` sets a field this client cannot honour (`REFUSED`), so a caller
        can refuse before any work. `drop_finished` is not among them: it only chooses how XRec's loop
        spends time, and this client always decodes with HF `generate` (drop_finished false's path)."""
        default = GenerationConfig()
        refused = [f for f in cls.REFUSED if getattr(gen, f) != getattr(default, f)]
        if refused:
            raise WhyrecError(f"the local chat client (zero-shot) cannot honour --generation.{refused[0]} "
                              f"{getattr(gen, refused[0])} ({cls.REFUSED[refused[0]]}); leave it at its default")

    @classmethod
    def for_generation(cls, model: ModelConfig, gen: GenerationConfig) -> LocalHFClient:
        """A client decoding as `gen` says: max_new_tokens, min_new_tokens, do_sample (temperature,
        top_p), num_beams, repetition_penalty, no_repeat_ngram_size, eos_bias and batch_size all reach
        `whyrec.llm.generate`; a field it cannot honour is refused (`check_generation`)."""
        from dataclasses import replace

        cls.check_generation(gen)
        client = cls(model, max_tokens=gen.max_new_tokens, batch_size=gen.batch_size,
                     repetition_penalty=gen.repetition_penalty, no_repeat_ngram_size=gen.no_repeat_ngram_size)
        client.decoding = replace(gen)
        return client

    def cache_params(self, max_tokens: int | None = None) -> dict:
        # The answer depends only on the weights, dtype, length cap and decoding options (the weights'
        # identity is keyed by ChatCache.key through `weights_identity`). Options added later enter the
        # key only away from their no-op values, so answers cached before them stay valid.
        d = self.decoding
        greedy = not d.do_sample and d.num_beams == 1
        params = {"max_tokens": max_tokens or self.max_tokens, "dtype": self.model_config.dtype, "greedy": greedy}
        if self.repetition_penalty != 1.0 or self.no_repeat_ngram_size:
            params.update(repetition_penalty=self.repetition_penalty, no_repeat_ngram_size=self.no_repeat_ngram_size)
        if d.min_new_tokens:
            params["min_new_tokens"] = d.min_new_tokens
        if d.num_beams > 1:
            params["num_beams"] = d.num_beams
        if d.eos_bias != 0:
            params["eos_bias"] = d.eos_bias
        if d.do_sample:  # seeded by the batch's prompts (`_generate`)
            params.update(do_sample=True, temperature=d.temperature, top_p=d.top_p, seed="prompts")
        return params

    def weights_identity(self) -> dict:
        """What `model_config` loads (see `whyrec.identity.model_identity`), computed once per client.

        `self.model` is only a name: the weights behind it (a local folder retrained or replaced in
        place, another GGUF file) must key the cache too, or they would get another model's answers."""
        if self._weights is None:
            from whyrec.identity import model_identity

            self._weights = model_identity(self.model_config.name_or_path, self.model_config.gguf_file)
        return self._weights

    def _load(self):
        if self._loaded is None:
            from whyrec.llm.load import load_model

            self._loaded = load_model(self.model_config)
        return self._loaded

    def iter_complete(self, batch: Sequence[Messages], max_tokens: int | None = None) -> Iterator[tuple[int, str]]:
        for start in range(0, len(batch), self.batch_size):
            answers = self._generate(batch[start:start + self.batch_size], max_tokens or self.max_tokens)
            yield from enumerate(answers, start)

    def _generate(self, chunk: Sequence[Messages], max_new_tokens: int) -> list[str]:
        from dataclasses import replace

        import torch

        model, tok = self._load()
        prompts = [_apply_template(tok, m) for m in chunk]
        tok.padding_side = "left"  # decoder-only batches must end where generation starts
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        d = self.decoding
        gen = replace(d, max_new_tokens=max_new_tokens, min_new_tokens=min(d.min_new_tokens, max_new_tokens))
        # Sampling draws from a generator seeded by the batch's prompts, in a forked RNG state: the same
        # requests draw the same answers on a rerun, and the caller's random state is left as it was.
        seed = int.from_bytes(hashlib.sha256("\0".join(prompts).encode()).digest()[:8], "big")
        with torch.random.fork_rng(enabled=gen.do_sample), torch.inference_mode():
            if gen.do_sample:
                torch.manual_seed(seed)
            out = generate(model, gen, tok, **enc)
        new = out[:, enc["input_ids"].shape[1]:]  # (batch, new_tokens)
        return [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]

    def choose(self, batch: Sequence[Messages], prefix: str, options: Sequence[str],
               progress: bool = False) -> list[int] | None:
        """Constrained answers: for each conversation, the index of the option the model finds most
        likely as the next token once its reply opens with `prefix` (one forward pass, no text to
        parse). None when the tokenizer does not split `prefix + option` into the prefix's tokens
        plus one token per option, so the caller falls back to free generation."""
        import torch
        from tqdm.auto import tqdm

        model, tok = self._load()
        ids = [tok(prefix + o, add_special_tokens=False).input_ids for o in options]
        head = tok(prefix, add_special_tokens=False).input_ids
        if any(len(i) != len(head) + 1 or i[:-1] != head for i in ids) or len({i[-1] for i in ids}) < len(ids):
            return None
        option_ids = torch.tensor([i[-1] for i in ids])
        tok.padding_side = "left"
        picks: list[int] = []
        for start in tqdm(range(0, len(batch), self.batch_size), disable=not progress, desc="choose"):
            prompts = [_apply_template(tok, m) + prefix for m in batch[start:start + self.batch_size]]
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)  # left padding: as generate does
            with torch.inference_mode():
                logits = model(**enc, position_ids=positions, logits_to_keep=1).logits[:, -1]
            picks += logits[:, option_ids.to(logits.device)].argmax(-1).tolist()
        return picks


def _apply_template(tok, messages: Messages) -> str:
    try:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # some templates (e.g. Gemma's) reject a system turn: fold it into the user turn
        if not messages or messages[0].get("role") != "system" or len(messages) < 2:
            raise
        first = {**messages[1], "content": messages[0]["content"] + "\n\n" + messages[1]["content"]}
        return tok.apply_chat_template([first, *messages[2:]], tokenize=False, add_generation_prompt=True)
