"""The shared-prefix rules of `whyrec.llm.continuous_rows`, on hand-made token rows."""

from whyrec.config import GenerationConfig
from whyrec.llm.continuous_rows import common_prefix, continuous, probed_prefix


def test_common_prefix_stops_at_the_first_difference_a_stop_token_and_short_of_the_shortest_row():
    assert common_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 4, 9]]) == [1, 2, 3]
    assert common_prefix([[1, 2, 7, 3, 4], [1, 2, 7, 3, 5]], stop=[7]) == [1, 2]  # 7: a row-dependent placeholder
    assert common_prefix([[1, 2, 3], [1, 2, 3]]) == [1, 2]  # each row keeps a token of its own to prefill
    assert common_prefix([[1, 2, 3]]) == [1, 2]
    assert common_prefix([[5, 2], [1, 2]]) is None and common_prefix([]) is None
    assert common_prefix([[7, 1], [7, 1]], stop=[7]) is None


def test_probed_prefix_drops_the_token_a_tokenizer_may_merge_with_the_text():
    def render(text: str) -> list[int]:  # "header: " + text, one token a character
        return [ord(c) for c in f"sys: {text}!"]

    assert probed_prefix(render) == [ord(c) for c in "sys:"]
    assert probed_prefix(render, stop=[ord(":")]) == [ord(c) for c in "sy"]
    assert probed_prefix(lambda text: [ord(text)]) is None


def test_beams_and_drop_finished_off_keep_hf_generate():
    assert continuous(GenerationConfig()) and continuous(GenerationConfig(do_sample=True))
    assert not continuous(GenerationConfig(num_beams=2)) and not continuous(GenerationConfig(drop_finished=False))
