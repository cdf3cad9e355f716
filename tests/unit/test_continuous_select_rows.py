"""Dropping finished rows from the continuous decoder's KV cache (`continuous.select_rows`)."""

from types import SimpleNamespace

import torch

from whyrec.llm.continuous import select_rows


def test_kept_rows_keep_their_cache_without_columns_no_kept_row_attends_to():
    keys = torch.randn(4, 2, 6, 3)
    values = torch.randn(4, 2, 6, 3)
    cache = SimpleNamespace(layers=[SimpleNamespace(keys=keys.clone(), values=values.clone()) for _ in range(2)])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1],   # kept: attends from column 3
                         [1, 1, 1, 1, 1, 1],   # dropped: the only row using columns 0-1
                         [0, 0, 1, 1, 1, 1],   # kept: attends from column 2
                         [1, 1, 1, 1, 1, 1]])  # dropped
    keep = torch.tensor([2, 0])  # order as given
    out = select_rows(cache, mask, keep)
    assert out.tolist() == [[1, 1, 1, 1], [0, 1, 1, 1]]
    for layer in cache.layers:
        assert torch.equal(layer.keys, keys[[2, 0], :, 2:]) and torch.equal(layer.values, values[[2, 0], :, 2:])
        assert layer.keys.is_contiguous()  # a fresh tensor: the next step's append copies nothing else


def test_no_column_is_cut_while_a_kept_row_uses_the_first():
    cache = SimpleNamespace(layers=[SimpleNamespace(keys=torch.randn(3, 1, 4, 2), values=torch.randn(3, 1, 4, 2))])
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1]])
    before = cache.layers[0].keys.clone()
    assert select_rows(cache, mask, torch.tensor([0, 2])).shape == (2, 4)
    assert torch.equal(cache.layers[0].keys, before[[0, 2]])
