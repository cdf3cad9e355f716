"""RecAlpaca inference and top-k evaluation (METHODS §6.3).

The original generated with beam search (one beam per GPU, 8-bit weights) and up to 1008
new tokens, then scored the free text with `whyrec.eval.topk`. Here decoding is greedy
(reproducible on any device) and continuously batched (`whyrec.llm.continuous_rows`: a finished
answer's slot goes to the next prompt; HF `generate` over left-padded batches for beams or penalties). `recommend` goes further than
the original: it keeps only titles from the prompt's candidate list and, when the model
names fewer than k of them, fills up from the candidates in prompt order, marking those
rows `from_model=False` with no reason, so a caller can tell model picks from fillers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, fields
from pathlib import Path

from whyrec.config import GenerationConfig, ModelConfig
from whyrec.eval.titles import candidates_from_prompt, match_to_candidates, parse_titles
from whyrec.eval.topk import PARSERS, evaluate_topk
from whyrec.llm.generate import generate
from whyrec.methods.recalpaca.alpaca import render_prompt
from whyrec.methods.recalpaca.config import METHOD
from whyrec.utils import WhyrecError, read_json, write_json, write_run_info, write_text

GENERATIONS = "generations.jsonl"
MAX_NEW_TOKENS = 512
"""Default answer budget. The original allowed 1008; its 200 evaluated answers (`output2`)
are 68-930 SmolLM2 tokens (median 334), and the five titles come first."""
GENERATION = GenerationConfig(max_new_tokens=MAX_NEW_TOKENS, batch_size=8, repetition_penalty=1.0)
"""RecAlpaca's default decoding: greedy, no repetition penalty, eight prompts a batch."""
CONTINUOUS_BATCHES = 8  # batches of prompts per continuous generate call in `evaluate_recalpaca`

def refills(gen: GenerationConfig) -> bool:
    """Whether `gen` decodes through continuous batching. Only without a repetition penalty or an
    n-gram block: HF `generate` applies those to the prompt's tokens too (RecAlpaca's prompts are
    input_ids), the continuous loop to the answer's only, so they keep HF `generate`, as beams do."""
    from whyrec.llm.continuous_rows import continuous

    return continuous(gen) and gen.repetition_penalty == 1.0 and gen.no_repeat_ngram_size == 0


_LIST_LINE = re.compile(r"^\s*(?:\(?\d{1,2}[.):]|[-*•+])\s+(.+?)\s*$", re.MULTILINE)
_REASON_LEAD = re.compile(r"""^["'”’*_]*\s*(?:\([^)]*\)\s*)*[-–—:|,.]*\s*""")


class RecAlpaca:
    """A causal LM (with or without the RecAlpaca adapter) answering Alpaca prompts."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def generate(self, prompts: Sequence[str | tuple[str, str]], gen: GenerationConfig = GENERATION,
                 progress: bool = False) -> list[str]:
        """One answer per prompt, decoded as `gen` says (default: greedy, no repetition penalty,
        `MAX_NEW_TOKENS`), `gen.batch_size` prompts a batch.

        Args:
            prompts: an (instruction, input) pair is rendered with the Alpaca template; a
                string is used verbatim (render it with `whyrec.methods.recalpaca.alpaca.render_prompt`).
            gen: repetition_penalty 1.0 is plain greedy; the original used 1.1 with beam search.
        """
        import torch

        from whyrec.progress import progress as progress_bar

        texts = [p if isinstance(p, str) else render_prompt(*p) for p in prompts]
        if refills(gen):
            return self._decode(texts, gen, progress)
        tok = self.tokenizer
        tok.padding_side = "left"  # new tokens append on the right of every row
        # Longest first, so similar lengths share a batch and an OOM shows up at once.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        answers: list[str] = [""] * len(texts)
        device = next(self.model.parameters()).device
        for s in progress_bar(range(0, len(order), gen.batch_size), desc="generate", unit="batch", enabled=progress):
            idx = order[s:s + gen.batch_size]
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True).to(device)
            with torch.no_grad():
                out = generate(self.model, gen, tok, **enc)
            new = out[:, enc["input_ids"].shape[1]:]  # (B, generated) after the shared prompt width
            for i, row in zip(idx, new):
                answers[i] = tok.decode(row, skip_special_tokens=True).strip()
        return answers

    def prompt_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each rendered prompt's token ids, unpadded, as `generate`'s batches hold them."""
        return [list(ids) for ids in self.tokenizer(list(texts))["input_ids"]]

    def _decode(self, texts: list[str], gen: GenerationConfig, progress: bool) -> list[str]:
        """All prompts through continuous batching (`whyrec.llm.continuous_rows`): `gen.batch_size` rows
        decode at once, a finished answer's slot goes to the next prompt, and the prompts' common start
        (the Alpaca header, a shared instruction) is prefilled once. Greedy: `generate`'s text per prompt."""
        from whyrec.llm.continuous_rows import decode_rows
        from whyrec.progress import progress as progress_bar

        tok = self.tokenizer
        with progress_bar(total=len(texts), desc="generate", unit="answer", enabled=progress) as bar:
            new = decode_rows(self.model, self.prompt_ids(texts), gen, tok.eos_token_id, tok.pad_token_id or 0,
                              on_row_done=lambda _: bar.update(1))
        return [tok.decode(ids, skip_special_tokens=True).strip() for ids in new]

    def stream(self, pull: Callable[[int], list[tuple[Hashable, list[int]]]],
               deliver: Callable[[Hashable, str], None], gen: GenerationConfig, prefix: list[int] | None = None,
               on_prefill: Callable[[int], None] | None = None) -> None:
        """Answer (key, `prompt_ids` row) rows as `pull(free_slots)` hands them over, until it gives none
        and nothing decodes; `deliver(key, answer)` as each row ends (`continuous_rows.stream_rows`,
        whose contract `pull` keeps). `prefix`: the token ids the prompts are expected to start with."""
        from whyrec.llm.continuous_rows import stream_rows

        tok = self.tokenizer

        def done(key, ids: list[int]) -> None:
            deliver(key, tok.decode(ids, skip_special_tokens=True).strip())

        stream_rows(self.model, pull, done, gen, tok.eos_token_id, tok.pad_token_id or 0, prefix=prefix,
                    on_prefill=on_prefill)

    def stream_prefix(self, instruction: str) -> list[int] | None:
        """The token ids every prompt of `instruction` starts with (header, instruction, input label)."""
        from whyrec.llm.continuous_rows import probed_prefix

        return probed_prefix(lambda text: self.prompt_ids([render_prompt(instruction, text)])[0])

    def recommend(self, instruction: str, input: str, candidates: Sequence[str] | None = None,  # noqa: A002
                  k: int = 5, gen: GenerationConfig = GENERATION) -> list[dict]:
        """k candidates with reasons; see `pick_recommendations`. `candidates` defaults to the
        bracketed list after "likely to like:" in `input`."""
        candidates = list(candidates) if candidates else candidates_from_prompt(input)
        if not candidates:
            raise WhyrecError("no candidates given and none found in the input ('likely to like: [...]')")
        text = self.generate([(instruction, input)], gen)[0]
        return pick_recommendations(text, candidates, k)


def _items_with_reasons(text: str) -> list[tuple[str, str | None]]:
    """(title, reason) per numbered or bulleted line; the reason is the rest of that line."""
    items = []
    for line in _LIST_LINE.findall(text):
        titles = parse_titles(f"1. {line}")
        if not titles:
            continue
        at = line.find(titles[0])
        rest = _REASON_LEAD.sub("", line[at + len(titles[0]):]).strip() if at >= 0 else ""
        items.append((titles[0], rest or None))
    if not items:  # no list: the quoted titles, without reasons
        items = [(t, None) for t in parse_titles(text)]
    return items


def pick_recommendations(text: str, candidates: Sequence[str], k: int = 5) -> list[dict]:
    """The first k distinct candidates the text names, then fillers from `candidates`.

    Titles outside the candidate list are dropped (loose spellings are matched with
    `whyrec.eval.titles.match_to_candidates`). Fillers are the remaining candidates in the
    prompt's order, with `from_model=False` and `reason=None`: the model did not choose them.
    """
    allowed = set(candidates)
    picks: dict[str, str | None] = {}
    for title, reason in _items_with_reasons(text):
        (match,) = match_to_candidates([title], candidates)
        if match in allowed and match not in picks:
            picks[match] = reason
    rows = [{"title": t, "reason": r, "from_model": True} for t, r in list(picks.items())[:k]]
    fillers = (c for c in dict.fromkeys(candidates) if c not in picks)
    rows += [{"title": c, "reason": None, "from_model": False} for c, _ in zip(fillers, range(k - len(rows)))]
    return rows


def load_recalpaca(path: str | Path | None, device: str = "auto",
                   base_model: ModelConfig | None = None) -> RecAlpaca:
    """A trained RecAlpaca run folder, ready to generate.

    Args:
        path: the folder `train_recalpaca` wrote; None runs `base_model` without an adapter
            (the zero-shot baseline).
        device: 'auto' (CUDA if present), 'cpu', 'cuda:1' ...
        base_model: overrides the base model recorded in the run folder.
    """
    from whyrec.llm.load import load_model

    if path is None:
        model, tok = load_model(ModelConfig(**{**asdict(base_model or ModelConfig()), "device": device}))
        return RecAlpaca(model, tok)
    from whyrec.folders import check_run, read_config, weights_fit

    path = check_run(path)  # missing folder, broken config.json or corrupt weights: one named error
    cfg = read_config(path / "config.json")
    if cfg.get("method") != METHOD or not (path / "adapter_model.safetensors").is_file():
        raise WhyrecError(f"{path} is not a finished RecAlpaca run "
                          "(config.json with method 'recalpaca' + adapter files)")
    known = {f.name for f in fields(ModelConfig)}
    base = base_model or ModelConfig(**{k: v for k, v in cfg["base_model"].items() if k in known})
    model, tok = load_model(ModelConfig(**{**asdict(base), "device": device}))
    from peft import PeftModel

    with weights_fit(path):
        model = PeftModel.from_pretrained(model, str(path))
    model.eval()
    return RecAlpaca(model, tok)


# What a key named when only these reached the decoder (the rest held GENERATION's values).
KEYED_DECODING = ("max_new_tokens", "repetition_penalty", "batch_size")


def generation_key(path: str | Path | None, base_model: ModelConfig | None, gen: GenerationConfig) -> dict:
    """What decides the answers besides the prompts: the run folder's files (adapter, config and the
    base model it names), a base model passed over it, and the decoding settings (the batch too:
    left padding can change greedy decoding); a setting at GENERATION's value beyond the three keys
    once held is left out, so answers cached then stay valid."""
    from whyrec.identity import model_key, run_identity
    from whyrec.methods.base import decoding_key

    base = base_model if base_model is not None or path is not None else ModelConfig()
    return {"run": run_identity(path) if path is not None else None,
            "base_model": model_key(base) if base is not None else None,
            "decoding": decoding_key(gen, GENERATION, KEYED_DECODING)}


def _generations(gen_path: Path, key: dict, prompts: list[tuple[str, str]], gen: GenerationConfig,
                 load) -> list[str]:
    """The answer to every prompt, from `gen_path`'s rows made under `key` (matched by user index
    and the prompt's digest), generating the missing batches with the model `load()` returns."""
    from whyrec.fingerprint import digest
    from whyrec.row_cache import cached_rows

    ids = [(i, digest(list(p))) for i, p in enumerate(prompts)]
    loaded: list = []

    def make_chunk(start: int, stop: int) -> list[dict]:
        if not loaded:  # the model loads on the first batch that is not cached
            loaded.append(load())
        texts = loaded[0].generate(prompts[start:stop], gen)
        return [{"user": u, "prompt": d, "generation": str(t)} for (u, d), t in zip(ids[start:stop], texts)]

    # The file keeps whole batches (a rerun resumes at the first missing one), but a continuous call
    # refills freed slots only from its own prompts: it takes up to CONTINUOUS_BATCHES missing batches
    # at once and the file still gets them one by one. A kill loses at most that many batches.
    rows = cached_rows(gen_path, key, ids, ("user", "prompt"), gen.batch_size, make_chunk, label=str(gen_path),
                       progress=True, chunks_per_call=CONTINUOUS_BATCHES if refills(gen) else 1)
    return [r["generation"] for r in rows]


def evaluate_recalpaca(path: str | Path | None, test_json: str | Path, out: str | Path,
                       max_users: int | None = None, gen: GenerationConfig = GENERATION, k: int = 5,
                       field: str = "input", device: str = "auto", base_model: ModelConfig | None = None) -> dict:
    """Generate answers for a RecAlpaca test JSON and score them (precision/recall/NDCG@k).

    `gen` is the decoding (`whyrec evaluate --generation.*`), used as given: `GENERATION` by default.
    Writes out/generations.jsonl (a `whyrec.row_cache` file: its first line is the key of what made
    the answers - the run folder's identity, the base model and the decoding (`generation_key`) -
    and each row names its user and its prompt's digest; rows are appended per batch,
    so a rerun generates only the batches missing under the same key, and a retrained run, other
    decoding or other prompts generate again instead of reusing stale answers),
    out/metrics.json (one entry per title parser, see `whyrec.eval.topk`), out/per_user.jsonl
    and out/run_config.json. `field` picks the prompt: 'input' (what the original evaluated)
    or 'wTop1Input'. `path=None` evaluates `base_model` without an adapter.
    """
    data = read_json(test_json)
    needed = {"instruction", field, "testGT"}
    if not isinstance(data, list) or not all(isinstance(r, dict) and needed <= r.keys() for r in data):
        raise WhyrecError(f"{test_json} is not a RecAlpaca test JSON (records with instruction, {field}, testGT)")
    records = data[:max_users] if max_users else data
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = generation_key(path, base_model, gen)
    prompts = [(r["instruction"], r[field]) for r in records]
    texts = _generations(out / GENERATIONS, key, prompts, gen,
                         lambda: load_recalpaca(path, device=device, base_model=base_model))
    cands = [candidates_from_prompt(r[field]) for r in records]
    truth = [list(r["testGT"]) for r in records]
    metrics: dict = {"model": str(path) if path else (base_model or ModelConfig()).name_or_path,
                     "test_json": Path(test_json).name, "field": field, "n_users": len(records)}
    per_user = [{"user": i} for i in range(len(records))]
    for parser in PARSERS:
        m, rows = evaluate_topk(texts, cands, truth, k=k, parser=parser)
        metrics[parser] = m
        for row, r in zip(per_user, rows):
            row[parser] = {key: v for key, v in r.items() if key != "user"}
    write_text(out / "per_user.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in per_user))
    settings = {"path": str(path) if path else None, "test_json": str(test_json), "max_users": max_users,
                **key["decoding"], "k": k, "field": field}
    write_run_info(out, settings, command="evaluate --task topk --method recalpaca")
    write_json(out / "metrics.json", metrics)
    return metrics
