"""RecExplainer served: the target model (SASRec/MF) recommends, the aligned LLM explains it.

The target is the recommender RecExplainer was aligned to explain, so its ranking (history
masked) is what the explanations are about. Explanations answer RecExplainer's own question
("would this user like the item, and why, as the model sees it"; `EXPLAIN_QUESTION`), as
`whyrec explain` and the faithfulness study ask it, decoded greedily without a repetition penalty
(as RecExplainer is evaluated) from the served GenerationConfig: max_new_tokens, min_new_tokens,
num_beams, no_repeat_ngram_size and batch_size apply; do_sample is refused.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from whyrec.config import GenerationConfig, generation_fingerprint
from whyrec.llm.generate import plain_greedy
from whyrec.methods.catalog import Catalog, Pair, Unsupported, dataset_label, revision
from whyrec.methods.cf_ablation import CF_KINDS, check_kind, overridden, perturbed


class RecExplainerModel:
    cold_start = False

    def __init__(self, folder: Path, device: str = "auto", generation: GenerationConfig | None = None):
        import json

        import torch

        from whyrec.methods.recexplainer.model import load_recexplainer

        self.folder, self.gen, self.torch = folder, generation or GenerationConfig(), torch
        plain_greedy(self.gen, "RecExplainer")  # sampling fails before the model loads, not at a request
        self.module = load_recexplainer(folder, device=device)
        self.target, self.meta = self.module.target, json.loads((folder / "config.json").read_text())
        files = ["config.json", "connectors.safetensors", "target/model.safetensors"]
        files += ["adapter_model.safetensors"] if (folder / "adapter_model.safetensors").is_file() else []
        self.revision = revision(folder, files, repr(sorted(generation_fingerprint(self.gen).items())))
        self.catalog = Catalog(list(self.target.user2idx), list(self.target.idx2item), self.target.titles,
                               history_of=self.target.history)
        self._prefix: list[int] | None = None  # the prompts' common start, probed on the first stream

    def recommend(self, user: str, k: int) -> list[dict]:
        with self.torch.inference_mode():
            scores = self.target.scores([user])[0]  # [I], the user's history at -inf
        top = self.torch.topk(scores, min(k, int(self.torch.isfinite(scores).sum())))
        return self.catalog.rows([self.target.idx2item[i] for i in top.indices.tolist()], top.values.tolist())

    def recommend_cold(self, liked, k):
        raise Unsupported("RecExplainer serves only its target model's users")  # the app checks cold_start first

    def explain(self, pairs: list[Pair]) -> list[str]:
        with self.torch.inference_mode():
            return self.module.explain([p.user for p in pairs], [p.item for p in pairs],
                                       plain_greedy(self.gen, "RecExplainer"))

    @property
    def explain_stream(self):
        """The server's continuous batching (`whyrec.serve.continuous`): `stream(pull, deliver,
        on_prefill)` explains the (key, Pair) rows `pull(free_slots)` hands over while it decodes, the
        explanation prompt's common start prefilled once a session. None when the generation
        settings need HF generate (beam search, drop_finished off)."""
        from whyrec.llm.continuous_rows import continuous

        return self._stream if continuous(self.gen) else None

    def _stream(self, pull, deliver, on_prefill=None) -> None:
        from whyrec.llm.continuous_rows import pull_rows, refusing, stream_rows

        module, tok = self.module, self.module.tokenizer
        placeholders: dict = {}

        def build(key, pair: Pair) -> tuple:
            msgs, phs = module.explain_messages([pair.user], [pair.item])
            row = (key, module.prompt_ids(msgs)[0])
            placeholders[key] = phs[0]
            return row

        admit = refusing(build, deliver)

        def rows(free: int) -> list:
            return pull_rows(pull, free, admit)

        def done(key, ids: list[int]) -> None:
            placeholders.pop(key, None)
            deliver(key, tok.decode(ids, skip_special_tokens=True).strip())

        if self._prefix is None:
            self._prefix = module.stream_prefix() or []
        with self.torch.inference_mode():
            stream_rows(module.llm, rows, done, plain_greedy(self.gen, "RecExplainer"), tok.eos_token_id,
                        tok.pad_token_id or 0, module.prepare(lambda keys: [placeholders[k] for k in keys]),
                        self._prefix, on_prefill)

    @property
    def cf_ablations(self) -> tuple[str, ...]:
        """Target vectors reach the LLM in the intention and hybrid modes; behaviour mode is text only."""
        return () if self.module.cfg.mode == "behaviour" else CF_KINDS

    @contextmanager
    def cf_ablation(self, kind: str, seed: int = 0):
        """Explanations inside the block use perturbed target vectors (`whyrec.methods.cf_ablation`).

        The target model's user and item vectors, which the connectors map onto the <user>/<item>
        tokens, are replaced: rows deranged (`shuffle-users`, `shuffle-items`), Gaussian rows
        (`random`), or zeroed (`no-cf`: the tokens then get what the connectors make of a zero vector
        added to their embedding). The prompt's text (hybrid mode: the purchase history) is unchanged,
        and so is the target's own ranking. Nothing of the model changes: a method override is
        removed when the block ends."""
        check_kind(kind, self.cf_ablations, f"RecExplainer ({self.module.cfg.mode} mode)")
        t, module = self.target, self.module
        users, items = list(t.user2idx), list(t.idx2item)
        with self.torch.no_grad():
            tables = {"user": ({u: k for k, u in enumerate(users)},
                               perturbed(t.user_vectors(users).detach().float(), "user", kind, seed)),
                      "item": ({i: k for k, i in enumerate(items)},
                               perturbed(t.item_vectors(items).detach().float(), "item", kind, seed))}
        real = module.target_vectors

        def target_vectors(side: str, specs: list[dict]):
            rows, table = tables[side]
            if any("history" in s for s in specs):  # a prefix to encode is no stored row: leave it
                return real(side, specs)
            return table[[rows[str(s["id"])] for s in specs]]

        with overridden(module, "target_vectors", target_vectors):
            yield

    def info(self) -> dict:
        meta, cfg = self.meta, self.module.cfg
        return {"method": "recexplainer", "backbone": meta["base_model"].get("name_or_path"),
                "dataset": dataset_label(self.folder / "target", meta), "steps": None, "revision": self.revision,
                "n_users": len(self.catalog.users), "n_items": len(self.catalog.items),
                "encoder": meta.get("target_kind"), "encoder_dim": meta.get("target_dim"), "mode": cfg.mode,
                "training": {}, "method_config": meta.get("config", {}),
                "recommends": f"the target model ({meta.get('target_kind')}) RecExplainer was aligned to: "
                              "dot-product scores, the user's history excluded",
                "explains": f"the aligned LLM ({cfg.mode} mode) answering RecExplainer's explanation question "
                            "(greedy; --generation.max_new_tokens)",
                "cold_start": False, "generation": asdict(plain_greedy(self.gen, "RecExplainer")),
                "folder": str(self.folder)}

