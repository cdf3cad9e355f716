"""The local chat client honours every GenerationConfig field it can (the zero-shot benchmark row
decodes through it) and refuses the one it cannot in one line; default clients keep their cache keys."""

from dataclasses import replace

import pytest
import torch

from whyrec.config import GenerationConfig, ModelConfig
from whyrec.llm import local_chat
from whyrec.llm.client import LocalHFClient, complete_many
from whyrec.utils import WhyrecError

torch.set_num_threads(1)
TINY = ModelConfig("tiny-random-llama", device="cpu", dtype="float32")
CONVS = [[{"role": "user", "content": "tone"}], [{"role": "user", "content": "strings and pedals"}]]
EVERY = GenerationConfig(max_new_tokens=12, min_new_tokens=3, do_sample=True, temperature=0.5, top_p=0.8, num_beams=2,
                         repetition_penalty=1.2, no_repeat_ngram_size=3, batch_size=2)


def test_every_decoding_field_reaches_generate(monkeypatch):
    seen = []
    real = local_chat.generate

    def spy(model, gen, tok, **inputs):
        seen.append(gen)
        return real(model, gen, tok, **inputs)

    monkeypatch.setattr(local_chat, "generate", spy)
    complete_many(LocalHFClient.for_generation(TINY, EVERY), CONVS, progress=False, max_tokens=12)
    assert seen == [EVERY]  # one batch of two, decoded exactly as asked
    seen.clear()
    complete_many(LocalHFClient(TINY, batch_size=2), CONVS, progress=False, max_tokens=12)
    assert not seen[0].do_sample and seen[0].num_beams == 1 and seen[0].min_new_tokens == 0  # judges: greedy


def test_sampling_is_seeded_by_the_prompts_and_leaves_the_callers_rng_alone():
    hot = replace(EVERY, num_beams=1, min_new_tokens=0, temperature=1.0, top_p=1.0, no_repeat_ngram_size=0,
                  repetition_penalty=1.0)
    sampler, greedy = LocalHFClient.for_generation(TINY, hot), LocalHFClient.for_generation(TINY, replace(hot, do_sample=False))
    state = torch.get_rng_state()
    first = complete_many(sampler, CONVS, progress=False, max_tokens=12)
    assert torch.equal(torch.get_rng_state(), state)
    assert complete_many(sampler, CONVS, progress=False, max_tokens=12) == first  # same requests, same draws
    assert complete_many(greedy, CONVS, progress=False, max_tokens=12) != first  # and they are samples


def test_a_field_it_cannot_honour_is_refused_in_one_line():
    with pytest.raises(WhyrecError, match=r"cannot honour --generation.candidates 4 \(") as err:
        LocalHFClient.for_generation(TINY, GenerationConfig(candidates=4))
    assert "\n" not in str(err.value)
    LocalHFClient.check_generation(replace(EVERY, drop_finished=False))  # decoding with HF generate is that path


def test_cache_keys_keep_their_old_form_and_new_settings_change_them():
    assert LocalHFClient(TINY).cache_params() == {"max_tokens": 256, "dtype": "float32", "greedy": True}
    zero_shot = GenerationConfig(max_new_tokens=80, batch_size=16)  # the zero-shot row's settings so far
    before = LocalHFClient(TINY, max_tokens=80, batch_size=16, repetition_penalty=zero_shot.repetition_penalty)
    assert LocalHFClient.for_generation(TINY, zero_shot).cache_params() == before.cache_params()
    keys = {repr(LocalHFClient.for_generation(TINY, replace(zero_shot, **change)).cache_params())
            for change in ({}, {"num_beams": 2}, {"min_new_tokens": 5}, {"do_sample": True},
                           {"do_sample": True, "temperature": 0.3}, {"no_repeat_ngram_size": 3})}
    assert len(keys) == 6
