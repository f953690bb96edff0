"""Pure parts of the CUDA pipeline: chunking and graph buckets (the CUDA parts run in deploy/gpu_check.sh)."""

from __future__ import annotations

import pytest

from inspector.errors import BackendError
from inspector.runtime.cuda_pipeline import bucket_for, buckets, chunks


def test_buckets_are_powers_of_two_up_to_the_chunk():
    assert buckets(8) == (1, 2, 4, 8)
    assert buckets(6) == (1, 2, 4, 6)
    assert buckets(1) == (1,)


def test_bucket_for_rounds_up():
    sizes = buckets(8)
    assert [bucket_for(n, sizes) for n in range(1, 9)] == [1, 2, 4, 4, 8, 8, 8, 8]
    with pytest.raises(BackendError):
        bucket_for(9, sizes)


def test_chunks_cover_the_batch_in_order():
    assert chunks(32, 8) == [(0, 8), (8, 16), (16, 24), (24, 32)]
    assert chunks(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert chunks(1, 8) == [(0, 1)]
