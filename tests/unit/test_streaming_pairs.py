"""The streaming Parquet reader gives exactly the pairs, CSR graph and digest of the in-memory path."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from whyrec.config import LightGCNConfig
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset, read_index_pairs
from whyrec.encoders.lightgcn import interaction_matrix
from whyrec.encoders.train import _load_data
from whyrec.eval.ranking import evaluate_ranking, user_block
from whyrec.utils import WhyrecError


def messy_dataset(tmp_path, n: int = 400) -> RecDataset:
    """String ids that don't sort like their indices, duplicate pairs, ratings with gaps, odd splits."""
    rng = np.random.default_rng(0)
    users = rng.integers(0, 37, n)
    items = rng.integers(0, 53, n)
    split = rng.choice([S.TRAIN] * 6 + [S.VALID, S.TEST, "holdout"], n)
    rating = rng.integers(1, 6, n).astype(float)
    rating[rng.random(n) < 0.1] = np.nan
    frame = pd.DataFrame({S.USER: [f"u{u}" for u in users], S.ITEM: [f"item-{i * 7 % 53}" for i in items],
                          S.RATING: rating, S.SPLIT: split, S.REVIEW: ["some text"] * n})
    # a saved map in non-sorted order whose indices are not the dict positions
    user2idx = {f"u{u}": (u * 11) % 37 for u in range(37)}
    ds = RecDataset(frame, None, None, user2idx=user2idx)
    return ds


def old_pairs(path, min_rating=None):
    """What encoders/train.py did before: the whole table in pandas, ids through dict lookups."""
    ds = RecDataset.load(path)
    frames = {name: ds.split(name) for name in S.SPLITS}
    if min_rating is not None:
        frames = {k: f[f[S.RATING] >= min_rating] for k, f in frames.items()}
    return ds, {k: ds.index_pairs(f) for k, f in frames.items()}


@pytest.mark.parametrize("min_rating", [None, 3.0])
@pytest.mark.parametrize("batch_rows", [7, 1 << 20])
def test_streaming_pairs_equal_in_memory_path(tmp_path, min_rating, batch_rows):
    path = messy_dataset(tmp_path).save(tmp_path / "ds")
    pq.write_table(pq.read_table(path / "interactions.parquet"), path / "interactions.parquet", row_group_size=50)
    ds, expected = old_pairs(path, min_rating)
    got = read_index_pairs(path, min_rating=min_rating, batch_rows=batch_rows)
    assert got.user2idx == ds.user2idx and got.item2idx == ds.item2idx
    assert got.split_counts == {k: int(v) for k, v in ds.summary()["splits"].items()}
    for name in S.SPLITS:
        for a, b in zip(got.pairs[name], expected[name], strict=True):
            np.testing.assert_array_equal(a, b)
    new_csr = interaction_matrix(*got.pairs[S.TRAIN], ds.n_users, ds.n_items)
    old_csr = interaction_matrix(*expected[S.TRAIN], ds.n_users, ds.n_items)
    for attr in ("indptr", "indices", "data"):
        a, b = getattr(new_csr, attr), getattr(old_csr, attr)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert new_csr.shape == old_csr.shape and new_csr.has_sorted_indices


def test_load_data_digest_unchanged(tmp_path):
    """The data digest (checkpoint/cache key) is the one the in-memory path gave."""
    import hashlib
    import json

    path = messy_dataset(tmp_path).save(tmp_path / "ds")
    ds, pairs = old_pairs(path)
    train = interaction_matrix(*pairs[S.TRAIN], ds.n_users, ds.n_items)
    h = hashlib.sha256()
    for arr in (train.indptr, train.indices, *pairs[S.VALID], *pairs[S.TEST]):
        h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    h.update(json.dumps([ds.user2idx, ds.item2idx], sort_keys=True).encode())
    dset = _load_data(str(path), LightGCNConfig())
    assert dset.digest == h.hexdigest()[:16]
    assert (dset.train != train).nnz == 0 and dset.valid[0].dtype == np.int64


def test_integer_and_dictionary_id_columns(tmp_path):
    """Folders written by other tools: ids stored as integers or arrow dictionaries map like str(id)."""
    path = messy_dataset(tmp_path).save(tmp_path / "ds")
    table = pq.read_table(path / "interactions.parquet")
    _, expected = old_pairs(path)
    users = pa.array([int(u[1:]) for u in table[S.USER].to_pylist()], pa.int64())
    RecDataset(pd.DataFrame({S.USER: users.to_numpy(), S.ITEM: table[S.ITEM].to_pylist(),
                             S.SPLIT: table[S.SPLIT].to_pylist()}), None, None).save(tmp_path / "int")
    int_table = table.set_column(0, S.USER, users).set_column(1, S.ITEM, table[S.ITEM].dictionary_encode())
    pq.write_table(int_table, tmp_path / "int" / "interactions.parquet")
    (tmp_path / "int" / "user2idx.json").write_text((path / "user2idx.json").read_text().replace('"u', '"'))
    (tmp_path / "int" / "item2idx.json").write_text((path / "item2idx.json").read_text())
    got = read_index_pairs(tmp_path / "int")
    for name in S.SPLITS:
        for a, b in zip(got.pairs[name], expected[name], strict=True):
            np.testing.assert_array_equal(a, b)


def test_streaming_errors(tmp_path):
    ds = messy_dataset(tmp_path)
    path = ds.save(tmp_path / "ds")
    with pytest.raises(WhyrecError, match="has no 'rating' column"):
        RecDataset(ds.interactions.drop(columns=S.RATING), None, None).save(tmp_path / "norating")
        read_index_pairs(tmp_path / "norating", min_rating=4)
    with pytest.raises(WhyrecError, match="no split column"):
        RecDataset(ds.interactions.drop(columns=S.SPLIT), None, None).save(tmp_path / "nosplit")
        read_index_pairs(tmp_path / "nosplit")
    (path / "user2idx.json").write_text('{"u1": 0}')
    with pytest.raises(WhyrecError, match="missing from user2idx"):
        read_index_pairs(path)
    with pytest.raises(WhyrecError, match="not found"):
        read_index_pairs(tmp_path / "nowhere")


def test_score_block_adapts_to_items_and_keeps_numbers():
    assert user_block(1000) == 1024 and user_block(300_000) == 223 and user_block(10**9) == 1
    assert user_block(300_000, max_bytes=2**62) == 1024
    gen = torch.Generator().manual_seed(0)
    user_emb, item_emb = torch.randn(60, 8, generator=gen), torch.randn(500, 8, generator=gen)
    rng = np.random.default_rng(0)
    pairs = (rng.integers(0, 60, 300), rng.integers(0, 500, 300))
    train = interaction_matrix(rng.integers(0, 60, 900), rng.integers(0, 500, 900), 60, 500)
    full = evaluate_ranking(user_emb, item_emb, pairs, train, ks=(5, 20))
    tiny = evaluate_ranking(user_emb, item_emb, pairs, train, ks=(5, 20), max_block_bytes=3 * 500 * 4)
    assert full == tiny
