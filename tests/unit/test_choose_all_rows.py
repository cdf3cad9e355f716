"""The continuous decoder's token choice: rows of different lengths processed at once (repetition
penalty, temperature, top-p) choose what each row's own group would choose."""

import torch
from transformers.generation.logits_process import LogitsProcessorList

from whyrec.config import GenerationConfig
from whyrec.llm.generate import logits_processors
from whyrec.llm.token_choice import choose_tokens, history_blind, penalised

VOCAB = 50


def _rows(seed: int) -> tuple[torch.Tensor, list[list[int]]]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(9, VOCAB, generator=gen).to(torch.bfloat16)
    lengths = [0, 1, 1, 3, 4, 4, 7, 2, 5]
    history = [torch.randint(0, VOCAB, (n,), generator=gen).tolist() for n in lengths]
    history[4] = [VOCAB - 1, VOCAB - 1, 0, 0]  # repeats and both ends of the vocabulary
    for row, seq in enumerate(history):  # make the penalty decide: each row's history holds its best token
        if seq:
            seq[-1] = int(logits[row].argmax())
    return logits, history


def test_all_rows_at_once_choose_as_grouped_rows_do():
    procs = logits_processors(GenerationConfig(repetition_penalty=1.8), eos_token_id=2)
    assert history_blind(procs)
    changed = 0
    for seed in range(20):
        logits, history = _rows(seed)
        at_once = choose_tokens(procs, logits, history, do_sample=False)
        grouped = choose_tokens(lambda ids, s: procs(ids, s), logits, history, do_sample=False)  # not a list: by length
        assert torch.equal(at_once, grouped)
        changed += int((at_once != logits.float().argmax(-1)).sum())
    assert changed > 20  # the penalty moved choices, so the two paths were really compared


def test_in_place_penalty_gives_hf_processors_floats():
    procs = logits_processors(GenerationConfig(repetition_penalty=1.3), eos_token_id=2)
    logits, history = _rows(1)
    seqs = torch.tensor([h + [VOCAB] * (7 - len(h)) for h in history])
    assert torch.equal(penalised(logits, seqs, [1.3, 1.3]), procs(seqs, procs(seqs, logits.float())))


def test_sampling_draws_the_same_tokens_either_way():
    procs = logits_processors(GenerationConfig(repetition_penalty=1.5, do_sample=True, temperature=0.7, top_p=0.9),
                              eos_token_id=2)
    assert history_blind(procs)
    logits, history = _rows(0)
    torch.manual_seed(5)
    at_once = choose_tokens(procs, logits, history, do_sample=True)
    torch.manual_seed(5)
    grouped = choose_tokens(lambda ids, s: procs(ids, s), logits, history, do_sample=True)
    assert torch.equal(at_once, grouped)


def test_length_aware_processors_keep_the_grouped_path():
    assert not history_blind(logits_processors(GenerationConfig(no_repeat_ngram_size=3), eos_token_id=2))
    assert not history_blind(logits_processors(GenerationConfig(min_new_tokens=4), eos_token_id=2))
    assert history_blind(LogitsProcessorList())


def test_fp32_greedy_decoding_is_unchanged_and_batch_independent():
    from whyrec.config import ModelConfig
    from whyrec.llm.continuous import decode_continuously, hf_prefill, hf_step
    from whyrec.llm.load import load_model

    texts = ["a", "a longer prompt with words", "mid size", "b c", "the quick brown fox jumps", "x", "hello there"]
    gen = GenerationConfig(max_new_tokens=10, repetition_penalty=1.3)
    llm, tok = load_model(ModelConfig("tiny-random-llama", dtype="float32", device="cpu"))
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True)
    procs = logits_processors(gen, tok.eos_token_id)

    def decode(chooser, max_batch: int, eos: int) -> list[list[int]]:
        prefill = hf_prefill(llm, enc["input_ids"], enc["attention_mask"])
        return decode_continuously(len(texts), prefill, hf_step(llm), chooser, gen.max_new_tokens, eos, max_batch,
                                   refill_at=1)

    with torch.no_grad():
        eos = decode(procs, len(texts), -1)[1][3]  # a token row 1 emits: rows stop early and slots refill
        at_once = decode(procs, 3, eos)
        grouped = decode(lambda ids, s: procs(ids, s), 3, eos)
        alone = decode(procs, 1, eos)
    assert at_once == grouped == alone
    assert len({len(r) for r in at_once}) > 1  # rows of different lengths shared batches


def test_greedy_takes_the_first_of_tied_maxima_as_argmax_does():
    logits = torch.randint(0, 3, (64, 300)).float()  # many ties at the top of every row
    chosen = choose_tokens(LogitsProcessorList(), logits, [[] for _ in range(64)], do_sample=False)
    assert torch.equal(chosen, logits.argmax(-1))
