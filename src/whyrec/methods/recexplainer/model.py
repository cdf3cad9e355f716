"""RecExplainer: Aligning LLMs for Explaining Recommendation Models (Lei et al., KDD 2024).

A frozen target recommender (SASRec or MF) lives inside the LLM wrapper. Two connectors,
Linear(d_rec -> connector_hidden) -> GELU -> Linear(-> d_model), map its user/item vectors
into the LLM's embedding space, and their output is ADDED to the token embedding at each
`<user>` / `<item>` position (`inputs_embeds`, input layer only; METHODS §5.2). LoRA on the
attention projections and the connectors train; the LLM and the target stay frozen.
Training lives in `whyrec.methods.recexplainer.train`; the tasks in
`whyrec.methods.recexplainer.tasks`.

The target is held outside the module tree (not a submodule), so its weights are neither in
the optimizer nor in the saved state, and its vectors are always computed under no_grad.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutput

from whyrec.config import (
    GenerationConfig,
    RecExplainerConfig,  # noqa: F401 (re-exported; defined torch-free for the CLI)
)
from whyrec.llm.continuous_rows import continuous, decode_rows, probed_prefix
from whyrec.llm.generate import generate
from whyrec.llm.precision import keep_trainables_fp32
from whyrec.llm.target_loss import target_loss
from whyrec.llm.tokens import add_tokens_mean_init
from whyrec.methods.recexplainer.tasks import (
    ITEM_TOKEN,
    USER_TOKEN,
    render_item,
    render_user,
)
from whyrec.utils import WhyrecError

METHOD = "recexplainer"
# RecExplainer's explanation question (METHODS §5.3), in our own words.
EXPLAIN_QUESTION = (
    "Here is a user's purchase history: {user}. Would this user like the item {item}? Give your answer first, "
    "then explain the decision the way the recommendation model sees it, covering: the patterns and traits in "
    "the user's purchase history, and how the item agrees or conflicts with the user's preferences."
)

EXPLAIN_GENERATION = GenerationConfig(max_new_tokens=500, min_new_tokens=150, batch_size=8, repetition_penalty=1.0)
"""How RecExplainer's explanation study decodes (METHODS §5.3): greedy, 150 to 500 new tokens, no
repetition penalty (its backbone decodes plain greedy), eight prompts a batch."""


def connector(d_rec: int, hidden: int, d_model: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_rec, hidden), nn.GELU(), nn.Linear(hidden, d_model))


class RecExplainer(nn.Module):
    """LLM (+LoRA) with connectors from a frozen target recommender."""

    # DeepSpeed ZeRO reduces gradients per parameter as they arrive: a rank whose batch has no
    # <user> (or <item>) token would skip that connector and the ranks' collectives would differ
    # (gloo: "Received data size doesn't match expected size"). When set (train_recexplainer does,
    # for DeepSpeed), an unused connector joins the graph with a zero contribution instead.
    touch_unused_connectors: bool = False

    def __init__(self, llm, tokenizer, target, cfg: RecExplainerConfig):
        super().__init__()
        self.cfg, self.tokenizer = cfg, tokenizer
        object.__setattr__(self, "target", target)  # deliberately not a submodule (see module docstring)
        for p in getattr(target, "parameters", lambda: [])():
            p.requires_grad_(False)
        add_tokens_mean_init(llm, tokenizer, [USER_TOKEN, ITEM_TOKEN])
        for p in llm.parameters():
            p.requires_grad_(False)
        self.llm = _wrap_lora(llm, cfg) if cfg.lora.enabled else llm
        keep_trainables_fp32(self.llm, llm.get_output_embeddings())  # modules_to_save on a bf16 backbone
        d_model = llm.config.hidden_size
        self.user_connector = connector(target.dim, cfg.connector_hidden, d_model)
        self.item_connector = connector(target.dim, cfg.connector_hidden, d_model)
        self.token_ids = {k: tokenizer.convert_tokens_to_ids(t) for k, t in (("user", USER_TOKEN), ("item", ITEM_TOKEN))}
        self.to(llm.get_input_embeddings().weight.device)

    # ---- injection -------------------------------------------------------------------
    @torch.no_grad()
    def target_vectors(self, kind: str, specs: list[dict]) -> torch.Tensor:
        """(N, d_rec) target vectors; a spec with "history" is encoded as that prefix when the
        target can encode one (SASRec, `sequence_vectors`), else by its id."""
        from whyrec.methods.recexplainer.material import can_encode_prefixes, sequence_vectors

        t = self.target
        if kind == "item":
            return t.item_vectors([s["id"] for s in specs]).detach().float()
        out: list = [None] * len(specs)
        seq = [k for k, s in enumerate(specs) if "history" in s and can_encode_prefixes(t)]
        ids = [k for k in range(len(specs)) if k not in set(seq)]
        for group, vecs in ((seq, lambda g: sequence_vectors(t, [specs[k]["history"] for k in g])),
                            (ids, lambda g: t.user_vectors([specs[k]["id"] for k in g]))):
            if group:
                for k, v in zip(group, vecs(group).detach().float()):
                    out[k] = v
        return torch.stack(out)

    def embed(self, input_ids: torch.Tensor, placeholders: list[list[dict]]) -> torch.Tensor:
        """Token embeddings (B, T, H) plus connector outputs at `<user>`/`<item>` positions only."""
        emb_layer = self.llm.get_input_embeddings()
        input_ids = input_ids.to(emb_layer.weight.device)
        embeds = emb_layer(input_ids)  # (B, T, H)
        extra = torch.zeros_like(embeds)
        for kind, conn in (("user", self.user_connector), ("item", self.item_connector)):
            rows, cols = (input_ids == self.token_ids[kind]).nonzero(as_tuple=True)  # row-major order
            if len(rows) == 0:
                if self.touch_unused_connectors and self.training:
                    # in_features, not weight.shape: a ZeRO-3 weight is an empty shard outside forward
                    dummy = embeds.new_zeros(1, conn[0].in_features, dtype=torch.float32)
                    extra = extra + 0.0 * conn(dummy).sum().to(embeds.dtype)
                continue
            specs = _specs_for_positions(rows.tolist(), placeholders, kind)
            vec = self.target_vectors(kind, specs).to(embeds.device)  # (N, d_rec)
            extra = extra.index_put((rows, cols), conn(vec).to(embeds.dtype))  # (N, H) at N positions
        return embeds + extra

    def forward(self, input_ids, attention_mask, labels, placeholders) -> CausalLMOutput:
        """Output whose `.loss` is the mean cross-entropy on the labelled (assistant) tokens: HF's
        loss value, with the LM head run on those positions only (`target_loss`), not on the prompt
        and padding. No `num_items_in_batch`: the Trainer keeps averaging the micro-batch means."""
        embeds = self.embed(input_ids, placeholders)
        loss = target_loss(self.llm, labels, inputs_embeds=embeds, attention_mask=attention_mask.to(embeds.device))
        return CausalLMOutput(loss=loss)

    # ---- inference -------------------------------------------------------------------
    def encode_prompts(self, messages_list: list[list[dict]]) -> dict[str, torch.Tensor]:
        """Left-padded chat prompts ending with the assistant header (a trailing assistant turn is dropped)."""
        from whyrec.llm.collate import pad_batch

        return pad_batch(self.prompt_ids(messages_list), None, self.tokenizer.pad_token_id, side="left")

    def prompt_ids(self, messages_list: list[list[dict]]) -> list[list[int]]:
        """Each chat prompt's token ids, unpadded (see `encode_prompts`)."""
        tok = self.tokenizer
        convs = [m[:-1] if m and m[-1]["role"] == "assistant" else m for m in messages_list]
        return [tok(tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
                    add_special_tokens=False).input_ids for c in convs]

    def prepare(self, placeholders_of):
        """The continuous decoder's `prepare` (`whyrec.llm.continuous_rows`): the embeddings of a
        prefill group, `placeholders_of(rows)` giving its rows' placeholders."""
        from contextlib import nullcontext

        def prepare(rows, ids):
            return {"inputs_embeds": self.embed(ids, placeholders_of(rows))}, nullcontext()

        return prepare

    @torch.no_grad()
    def decode(self, messages_list: list[list[dict]], placeholders_list: list[list[dict]],
               gen: GenerationConfig) -> list[str]:
        """One answer per prompt through continuous batching: at most `gen.batch_size` rows decode at
        once, a finished row's slot goes to the next prompt, and the prompts' common start (chat
        header, system prompt, the question's opening) is prefilled once. Greedy: the text `generate`
        gives each prompt alone. No beam search (`generate` has it)."""
        tok = self.tokenizer
        new = decode_rows(self.llm, self.prompt_ids(messages_list), gen, tok.eos_token_id, tok.pad_token_id or 0,
                          self.prepare(lambda rows: [placeholders_list[r] for r in rows]),
                          stop=list(self.token_ids.values()))  # the prefix ends before the first placeholder
        return [tok.decode(ids, skip_special_tokens=True).strip() for ids in new]

    def stream_prefix(self) -> list[int] | None:
        """The token ids every explanation prompt starts with, for a server that does not know its
        prompts yet (`whyrec.llm.continuous_rows.probed_prefix`)."""
        def render(text: str) -> list[int]:
            return self.prompt_ids([[{"role": "user", "content": EXPLAIN_QUESTION.format(user=text, item=text)}]])[0]

        return probed_prefix(render, stop=list(self.token_ids.values()))

    @torch.no_grad()
    def generate(self, messages_list: list[list[dict]], placeholders_list: list[list[dict]], gen: GenerationConfig,
                 num_return_sequences: int = 1) -> list[str] | list[list[str]]:
        """Answers decoded as `gen` says (`gen.batch_size` is the caller's business: one batch here); a
        list of `num_return_sequences` strings per prompt when > 1 (beam search, `gen.num_beams`)."""
        enc = self.encode_prompts(messages_list)
        embeds = self.embed(enc["input_ids"], placeholders_list)
        out = generate(self.llm, gen, self.tokenizer, num_return_sequences=num_return_sequences,
                       inputs_embeds=embeds, attention_mask=enc["attention_mask"].to(embeds.device))
        texts = [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]
        n = num_return_sequences
        return texts if n == 1 else [texts[k:k + n] for k in range(0, len(texts), n)]

    @torch.no_grad()
    def yes_no_logits(self, messages_list: list[list[dict]], placeholders_list: list[list[dict]]) -> torch.Tensor:
        """(N, 2) next-token logits of ["Yes", "No"] at the end of each prompt (no generation)."""
        enc = self.encode_prompts(messages_list)
        embeds = self.embed(enc["input_ids"], placeholders_list)
        mask = enc["attention_mask"].to(embeds.device)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens start at 0
        logits = self.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids,
                          use_cache=False).logits[:, -1]
        answer_ids = [self.tokenizer(w, add_special_tokens=False).input_ids[0] for w in ("Yes", "No")]
        return logits[:, answer_ids].float().cpu()

    def explain_messages(self, users: list[str], items: list[str]) -> tuple[list[list[dict]], list[list[dict]]]:
        mode, t = self.cfg.mode, self.target
        msgs = [[{"role": "user", "content": EXPLAIN_QUESTION.format(
            user=render_user(t, u, mode, self.cfg.max_hist_len), item=render_item(t, i, mode))}]
            for u, i in zip(users, items)]
        phs = [[] if mode == "behaviour" else [{"kind": "user", "id": u}, {"kind": "item", "id": i}]
               for u, i in zip(users, items)]
        return msgs, phs

    def explain(self, users: list[str], items: list[str], gen: GenerationConfig = EXPLAIN_GENERATION) -> list[str]:
        """Answer RecExplainer's explanation question per (user, item), `gen.batch_size` rows at a time
        (continuously refilled, `decode`; HF `generate` over fixed batches for beam search or
        drop_finished off); by default decoded as the paper's study (greedy, 150-500 new tokens; METHODS §5.3)."""
        users, items = [str(u) for u in users], [str(i) for i in items]
        msgs, phs = self.explain_messages(users, items)
        if continuous(gen):
            return self.decode(msgs, phs, gen)
        out: list[str] = []
        for s in range(0, len(msgs), gen.batch_size):
            out += self.generate(msgs[s:s + gen.batch_size], phs[s:s + gen.batch_size], gen)
        return out

    def connector_state(self) -> dict[str, torch.Tensor]:
        keep = ("user_connector.", "item_connector.")
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if k.startswith(keep)}


class UnalignedBackbone:
    """The backbone of a loaded RecExplainer with the alignment switched off: the LoRA disabled
    (peft's `disable_adapter`, which also restores any `modules_to_save`), no connectors
    (behaviour-mode prompts hold no placeholders, and none are passed) and titles only - the
    paper's vanilla-LLM row. Offers the same `generate` / `yes_no_logits` / `explain` as
    RecExplainer, so the alignment metrics and the explanation study run on it unchanged.

    The two placeholder tokens stay in the vocabulary (mean-initialised rows) but never occur
    in its prompts.
    """

    def __init__(self, module: RecExplainer):
        from dataclasses import replace

        self.module, self.target, self.tokenizer = module, module.target, module.tokenizer
        self.cfg = replace(module.cfg, mode="behaviour")

    def adapter_off(self):
        """Context in which the LoRA does nothing (a no-op when the run trained none)."""
        from contextlib import nullcontext

        return getattr(self.module.llm, "disable_adapter", nullcontext)()

    def generate(self, messages_list, placeholders_list=None, *args, **kw):
        with self.adapter_off():
            return self.module.generate(messages_list, [[] for _ in messages_list], *args, **kw)

    def decode(self, messages_list, placeholders_list, gen: GenerationConfig) -> list[str]:
        with self.adapter_off():  # over the whole loop: every prefill and decode step runs without the LoRA
            return self.module.decode(messages_list, [[] for _ in messages_list], gen)

    def yes_no_logits(self, messages_list, placeholders_list=None):
        with self.adapter_off():
            return self.module.yes_no_logits(messages_list, [[] for _ in messages_list])

    def explain_messages(self, users: list[str], items: list[str]):
        return RecExplainer.explain_messages(self, users, items)  # behaviour mode: titles only

    def explain(self, users, items, gen: GenerationConfig = EXPLAIN_GENERATION):
        return RecExplainer.explain(self, users, items, gen)


def _specs_for_positions(rows: list[int], placeholders: list[list[dict]], kind: str) -> list[dict]:
    """The placeholder spec of each token occurrence: the k-th `<kind>` token of a row takes the
    row's k-th placeholder of that kind (a right cut may have dropped trailing tokens)."""
    seen: dict[int, int] = {}
    specs = []
    for r in rows:
        mine = [p for p in placeholders[r] if p["kind"] == kind]
        k = seen[r] = seen.get(r, -1) + 1
        if k >= len(mine):
            raise WhyrecError(f"row {r} has more <{kind}> tokens than {kind} placeholders ({len(mine)}); "
                              f"the text must not contain literal {kind} placeholder tokens")
        specs.append(mine[k])
    return specs


def _wrap_lora(llm, cfg: RecExplainerConfig):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    lc = cfg.lora
    return get_peft_model(llm, PeftLoraConfig(
        r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=list(lc.target_modules),
        modules_to_save=list(cfg.modules_to_save) or None, bias="none", task_type="CAUSAL_LM"))


def _load_target(path, device: str = "cpu"):
    from whyrec.encoders.target_model import load_target

    return load_target(path, device)


def load_recexplainer(path, device: str = "auto") -> RecExplainer:
    """Rebuild a trained RecExplainer from its folder alone (adapter, connectors, target copy)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from whyrec.config import ModelConfig
    from whyrec.folders import check_run, read_config, weights_fit
    from whyrec.llm.load import load_model

    path = check_run(path)  # missing folder, broken config.json or corrupt weights: one named error
    if not (path / "config.json").is_file() or read_config(path / "config.json").get("method") != METHOD:
        raise WhyrecError(f"{path} is not a RecExplainer folder (no config.json with method {METHOD!r})")
    meta = read_config(path / "config.json")
    model = ModelConfig(**meta["base_model"])
    model.device = device if device != "auto" else model.device
    cfg = RecExplainerConfig(**meta["config"])
    llm, tok = load_model(model)
    with weights_fit(path):
        module = RecExplainer(llm, tok, _load_target(path / meta["target"], str(llm.device)), cfg)
        if cfg.lora.enabled:
            set_peft_model_state_dict(module.llm, load_file(str(path / "adapter_model.safetensors")))
        missing = module.load_state_dict(load_file(str(path / "connectors.safetensors")), strict=False)
    if missing.unexpected_keys:
        raise WhyrecError(f"{path}/connectors.safetensors does not match its config ({missing.unexpected_keys[0]})")
    return module.eval()
