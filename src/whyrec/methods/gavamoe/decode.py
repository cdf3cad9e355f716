"""GaVaMoE's continuous batching (`whyrec.llm.continuous`): rows join while others decode, each with
its own cluster's gate, and the shared prompt prefix is prefilled once per cluster. `stream` serves
the HTTP server, `decode_rows` the offline explain (`GaVaMoEExplainer.explain`, evaluate, benchmark).

Rows of one running batch may belong to different VAE clusters, and the cluster picks the router of
every MoE layer. Three things keep each row on its own gate:
- prefill groups route by their rows' clusters (`route_by`), like a batch of `GaVaMoE.generate`;
- every decode step routes by the clusters of the live rows, in the decoder's row order: `LiveRows`
  mirrors that order from the two events that change it (rows prefilled, a row ending);
- the shared prefix is not cluster-free: the MoE MLPs of the prefix tokens feed the next layer's
  keys and values, so its KV cache is made per cluster (lazily, once per session), and a prefill
  group holding several clusters prefills one sub-group per cluster and joins their caches.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch

from whyrec.adapters.cluster_experts import route_by
from whyrec.config import GenerationConfig

Row = tuple[Hashable, str, torch.Tensor, torch.Tensor, int]  # (key, prompt, user vector, item vector, cluster)


def prefix_ids(module) -> list[int] | None:
    """The token ids every prompt of `module` starts with, up to (not including) `<USER_VEC>`: the
    first position whose input depends on the pair. None when the template puts nothing before it."""
    # The pair's own text (title, mood, facts) comes after <USER_VEC>, so any prompt shows the prefix.
    probe = module.encode([module.prompt("x")], side="left")["input_ids"][0].tolist()
    user_token = module.token_ids[0]
    cut = probe.index(user_token) if user_token in probe else 0
    return probe[:cut] or None


class LiveRows:
    """The rows in flight: their inputs by key, and the keys in the decoder's batch order."""

    def __init__(self):
        self.rows: dict[Hashable, tuple[list[int], torch.Tensor, torch.Tensor, int]] = {}
        self.order: list[Hashable] = []  # decode_stream appends prefilled rows and drops ended ones, in order

    def clusters(self, keys) -> torch.Tensor:
        return torch.tensor([self.rows[k][3] for k in keys], dtype=torch.long)


def prefill_by_cluster(module, live: LiveRows, pad_id: int, ids: list[int] | None = None):
    """A `Prefill` over row keys: one `prefill_rows` group per cluster (each on its cluster's prefix
    cache), joined into one cache and put back in the order of `keys`. `ids`: the shared prefix
    (default: `prefix_ids`, probed from the template)."""
    from whyrec.llm.continuous import SharedPrefix, append_rows, prefill_rows, select_rows

    ids = ids or prefix_ids(module)
    prefixes: dict[int, SharedPrefix] = {}

    def prefix_of(cluster: int) -> SharedPrefix | None:
        if ids and cluster not in prefixes:
            with route_by(module.moes, torch.tensor([cluster])):
                prefixes[cluster] = SharedPrefix(module.llm, ids)
        return prefixes.get(cluster)

    def prepare(keys, suffix_ids):
        user_vec = torch.stack([live.rows[k][1] for k in keys])  # (k, D)
        item_vec = torch.stack([live.rows[k][2] for k in keys])
        return {"inputs_embeds": module._embeds(suffix_ids, user_vec, item_vec)}, route_by(module.moes, live.clusters(keys))

    def fetch(keys):
        return [live.rows[k][0] for k in keys]

    def prefill(keys: list):
        groups: dict[int, list[int]] = {}
        for n, key in enumerate(keys):
            groups.setdefault(live.rows[key][3], []).append(n)
        logits = cache = mask = pos = None
        for cluster, ns in groups.items():
            part = prefill_rows(module.llm, fetch, prepare, prefix_of(cluster), pad_id)([keys[n] for n in ns])
            if cache is None:
                logits, cache, mask, pos = part
            else:
                mask = append_rows(cache, mask, part[1], part[2])
                logits, pos = torch.cat([logits, part[0]]), torch.cat([pos, part[3]])
        order = [n for ns in groups.values() for n in ns]  # row of each joined position
        if len(groups) > 1:
            back = torch.tensor(sorted(range(len(order)), key=order.__getitem__), device=logits.device)
            mask = select_rows(cache, mask, back)
            logits, pos = logits[back], pos[back]
        live.order += keys  # decode_stream appends these rows to its live batch, in this order
        return logits, cache, mask, pos

    return prefill


def step_by_cluster(module, live: LiveRows):
    from whyrec.llm.continuous import hf_step

    base = hf_step(module.llm)

    def step(tokens, mask, next_pos, cache):
        if len(live.order) != len(tokens):  # the mirror of decode_stream's batch lost track: never guess a gate
            raise RuntimeError(f"{len(live.order)} rows tracked for a decode batch of {len(tokens)}")
        with route_by(module.moes, live.clusters(live.order)):
            return base(tokens, mask, next_pos, cache)

    return step


@torch.no_grad()
def decode_rows(module, rows: list[tuple[list[int], torch.Tensor, torch.Tensor, int]], gen: GenerationConfig,
                on_row_done: Callable[[int], None] | None = None) -> list[list[int]]:
    """New token ids (up to and including EOS) for each (prompt ids, user vector, item vector,
    cluster) row, at most `gen.batch_size` decoding at once whatever their clusters."""
    from whyrec.llm.continuous import decode_continuously
    from whyrec.llm.continuous_rows import common_prefix
    from whyrec.llm.generate import logits_processors

    live, tok = LiveRows(), module.tokenizer
    live.rows.update(enumerate(rows))
    # The rows at hand show their common start (up to <USER_VEC>) without rendering a probe prompt.
    ids = common_prefix([r[0] for r in rows], module.token_ids)

    def done(row: int) -> None:
        live.order.remove(row)  # decode_continuously dropped it from its batch: the mirror follows
        if on_row_done is not None:
            on_row_done(row)

    eos = tok.eos_token_id
    return decode_continuously(len(rows), prefill_by_cluster(module, live, tok.pad_token_id or 0, ids),
                               step_by_cluster(module, live), logits_processors(gen, eos), gen.max_new_tokens, eos,
                               gen.batch_size, do_sample=gen.do_sample, on_row_done=done)


def stream(module, pull: Callable[[int], list[Row]], deliver: Callable[[Hashable, object], None],
           gen: GenerationConfig, on_prefill: Callable[[int], None] | None = None) -> None:
    """Explain rows as `pull(free_slots)` hands them over until it gives none and nothing decodes;
    `deliver(key, text)` as each row ends (text as `GaVaMoE.generate` cleans it), `deliver(key,
    exception)` for a row that cannot be prepared (the others go on). Keys must be unique in flight."""
    from whyrec.llm.continuous import decode_stream
    from whyrec.llm.continuous_rows import pull_rows
    from whyrec.llm.generate import logits_processors

    live, tok = LiveRows(), module.tokenizer
    n_clusters = module.moes[0].n_clusters if module.moes else 1

    def admit(request: tuple) -> Hashable | None:
        key, prompt, user_vec, item_vec, cluster = request
        ids = module.encode([prompt], side="left")["input_ids"][0].tolist()
        if ids.count(module.token_ids[0]) != 1 or ids.count(module.token_ids[1]) != 1:
            deliver(key, ValueError(f"the prompt of {key!r} does not hold one <USER_VEC> and one <ITEM_VEC>"))
        elif not 0 <= int(cluster) < n_clusters:
            deliver(key, ValueError(f"cluster {int(cluster)} of {key!r} is not in 0..{n_clusters - 1}"))
        else:
            live.rows[key] = (ids, user_vec, item_vec, int(cluster))
            return key
        return None

    def take(free: int) -> list[Hashable]:
        return pull_rows(pull, free, admit)

    def done(key, ids: list[int]) -> None:
        live.order.remove(key)
        live.rows.pop(key, None)
        deliver(key, tok.decode(ids, skip_special_tokens=True).strip())

    eos = tok.eos_token_id
    prefill = prefill_by_cluster(module, live, tok.pad_token_id or 0)
    decode_stream(take, prefill, step_by_cluster(module, live), logits_processors(gen, eos), gen.max_new_tokens, eos,
                  gen.batch_size, do_sample=gen.do_sample, on_row_done=done, on_prefill=on_prefill)
