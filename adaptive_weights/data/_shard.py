"""Which part of every batch one process of a data-parallel run takes.

A data-parallel run splits each *global* batch (``train.batch_size`` images, the batch a one-process
run would see) evenly across its ``world_size`` processes: rank ``r`` takes the ``r``-th contiguous
slice of the batch's positions in the epoch's one shared order. Every loader applies this one rule,
so the union of the ranks' batches is exactly the one-process batch, the number of steps per epoch
does not depend on the world size, and a checkpoint's position (epoch, global batch) means the
same in a run resumed with any number of processes.
"""

from __future__ import annotations

from ..errors import RefusedError

__all__ = ["local_batch_size", "shard_range"]


def local_batch_size(batch_size: int, world_size: int, rank: int = 0) -> int:
    """Images per process of a global batch of ``batch_size``; refuses a size that does not divide."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise RefusedError(f"rank {rank} of world size {world_size}; need world_size >= 1 and 0 <= rank < world_size")
    if batch_size % world_size:
        raise RefusedError(
            f"train.batch_size={batch_size} (the global batch) does not split evenly across {world_size} "
            f"processes; choose a multiple of {world_size} (e.g. {batch_size - batch_size % world_size or world_size})")
    return batch_size // world_size


def shard_range(lo: int, hi: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous part of the batch at positions ``[lo, hi)``: equal parts of a full
    batch; a last, partial (evaluation) batch is split as evenly as it goes, some parts maybe empty."""
    size = hi - lo
    return lo + rank * size // world_size, lo + (rank + 1) * size // world_size
