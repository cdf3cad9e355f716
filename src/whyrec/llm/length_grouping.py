"""Length-grouped micro-batches for the Hugging Face Trainer, in an order fixed by (seed, epoch).

Right-padded micro-batches of rows drawn at random carry much padding when lengths vary (RecExplainer's
task mixture: 1.71x). Grouping rows of similar length into a micro-batch removes most of it. HF's own
`group_by_length` sampler draws its shuffle from the global torch random state, which a resumed run
does not restore before the sampler runs, so a resumed run would see other batches than an
uninterrupted one. Here the order is a pure function of (seed, epoch), like `trainer.epoch_batches`
of the own loop, and the Trainer's resume (`skip_first_batches` over the same order, the epoch set
through `set_epoch`) then skips exactly the micro-batches already consumed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Sampler

from whyrec.llm.collate import length_bucketed_order


def grouped_order(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[int]:
    """Row indices of one epoch: consecutive runs of `batch_size` rows have similar lengths.

    Rows are shuffled, sorted within windows of 50 micro-batches and cut (`length_bucketed_order`),
    and the micro-batches shuffled; the one short micro-batch (if the rows do not fill the last) goes
    last, so the DataLoader, which cuts this flat order every `batch_size` rows, cuts the same ones.
    """
    gen = torch.Generator().manual_seed(seed + epoch)
    batches = length_bucketed_order(list(lengths), batch_size, gen)
    ordered = [b for b in batches if len(b) == batch_size] + [b for b in batches if len(b) < batch_size]
    return [i for b in ordered for i in b]


class LengthGroupedSampler(Sampler[int]):
    """`grouped_order` as a sampler; the Trainer (through accelerate) calls `set_epoch` every epoch.

    Every rank builds the same order, so accelerate's per-rank split of the micro-batches
    (`BatchSamplerShard`) stays consistent across processes.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = list(lengths), batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(grouped_order(self.lengths, self.batch_size, self.seed, self.epoch))

    def __len__(self) -> int:
        return len(self.lengths)


def with_length_grouping(trainer_cls: type) -> type:
    """`trainer_cls` whose training rows (dicts with `input_ids`) come length-grouped.

    The seed is the Trainer's `data_seed`, else its `seed` (what accelerate's seedable random sampler
    uses for the ungrouped order)."""

    class LengthGrouped(trainer_cls):
        def _get_train_sampler(self, train_dataset=None):
            rows = train_dataset if train_dataset is not None else self.train_dataset
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return LengthGroupedSampler([len(r["input_ids"]) for r in rows], self._train_batch_size, seed)

    LengthGrouped.__name__ = LengthGrouped.__qualname__ = trainer_cls.__name__
    return LengthGrouped
