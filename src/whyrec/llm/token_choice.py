"""The continuous decoder's choice of each row's next token (`whyrec.llm.continuous`).

Rows in a continuously refilled batch have generated different numbers of tokens, while HF's
logits processors take the histories as one rectangular batch. Processors that look only at which
tokens a row produced (repetition penalty, temperature, top-p) or at none (a single-token bias:
`--generation.eos_bias`) take all rows at once, histories padded with an id past the vocabulary;
the others (minimum length, n-gram blocking) see the rows in groups of equal length. The repetition
penalty, the default's only processor, runs in place (after any token bias): this choice is a few
passes over a (rows x vocabulary) block, a sizeable part of a decode step.
"""

from __future__ import annotations

import torch


def choose_tokens(procs, logits: torch.Tensor, generated: list[list[int]], do_sample: bool) -> torch.Tensor:
    """One token per row; every logits processor sees exactly the tokens its row produced: all rows
    at once when the processors look at the set of a row's tokens only (`history_blind`), else
    in groups of equal generated length (as a batch of equal-length rows)."""
    if history_blind(procs):
        vocab = logits.shape[-1]
        width = max(map(len, generated))
        # Padded with the id one past the vocabulary, which lands in an extra column that is dropped
        # (HF's repetition penalty does the same): padding penalises nothing.
        seqs = torch.tensor([seq + [vocab] * (width - len(seq)) for seq in generated], dtype=torch.long,
                            device=logits.device).view(len(generated), width).clamp_(max=vocab)
        fast = _biases_then_penalties(procs)
        if fast is not None:
            scores = penalised(logits, seqs, fast[1], fast[0])
        else:
            scores = procs(seqs, logits.float())
    else:
        scores = torch.empty_like(logits, dtype=torch.float32)
        groups: dict[int, list[int]] = {}
        for k, seq in enumerate(generated):
            groups.setdefault(len(seq), []).append(k)
        for length, ks in groups.items():
            idx = torch.tensor(ks, device=logits.device)
            seqs = torch.tensor([generated[k] for k in ks], dtype=torch.long, device=logits.device).view(len(ks), length)
            scores[idx] = procs(seqs, logits[idx].float())
    if do_sample:
        return torch.multinomial(scores.softmax(-1), 1).squeeze(1)
    # The first maximum, as argmax gives it; torch's CPU argmax over a 32 x 49k row block is ~3.5x
    # slower than max (both one pass; a few ms a step at SmolLM2's vocabulary).
    return scores.max(-1).indices


def penalised(logits: torch.Tensor, seqs: torch.Tensor, penalties: list[float],
              biases: list[tuple[int, float]] = ()) -> torch.Tensor:
    """HF's `SequenceBiasLogitsProcessor` on single tokens (`biases`: (token, bias), added in turn)
    then `RepetitionPenaltyLogitsProcessor` (the same arithmetic, so the same floats) in place on
    one fp32 copy of the logits: HF's pads, clones and scatters a fresh copy per processor,
    several passes over a (rows x vocabulary) block that dominate the choice of a token."""
    vocab = logits.shape[-1]
    scores = torch.empty(logits.shape[0], vocab + 1, dtype=torch.float32, device=logits.device)
    scores[:, :vocab] = logits
    scores[:, vocab] = 0
    for token, bias in biases:  # an fp32 bias added to an fp32 logit, as HF's bias vector is
        scores[:, token] += torch.tensor(bias, dtype=torch.float32, device=logits.device)
    for penalty in penalties:
        picked = scores.gather(1, seqs)
        scores.scatter_(1, seqs, torch.where(picked < 0, picked * penalty, picked / penalty))
    return scores[:, :vocab]


def _is_penalty(proc) -> bool:
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    return type(proc) is RepetitionPenaltyLogitsProcessor and proc.prompt_ignore_length is None


def _token_biases(proc) -> list[tuple[int, float]] | None:
    """A `SequenceBiasLogitsProcessor` whose sequences are all single tokens (a bias that ignores
    the history) as (token, bias) pairs; None for any other processor."""
    from transformers.generation.logits_process import SequenceBiasLogitsProcessor

    if type(proc) is not SequenceBiasLogitsProcessor or not all(len(s) == 1 for s in proc.sequence_bias):
        return None
    return [(s[0], float(b)) for s, b in proc.sequence_bias.items()]


def _biases_then_penalties(procs) -> tuple[list[tuple[int, float]], list[float]] | None:
    """(token biases, penalties) when `procs` are single-token biases followed by repetition
    penalties only (`penalised` computes them in place), else None."""
    biases: list[tuple[int, float]] = []
    penalties: list[float] = []
    for p in procs:
        pairs = _token_biases(p)
        if pairs is not None and not penalties:
            biases += pairs
        elif _is_penalty(p):
            penalties.append(p.penalty)
        else:
            return None
    return biases, penalties


def history_blind(procs) -> bool:
    """Whether every processor's output for a row depends on the set of the row's tokens at most,
    not on their number or order (minimum length and n-gram blocking do)."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    return isinstance(procs, list) and all(type(p) in (TemperatureLogitsWarper, TopPLogitsWarper) or _is_penalty(p)
                                           or _token_biases(p) is not None for p in procs)
