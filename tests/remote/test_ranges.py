"""Range coalescing, chunking and the retry policy as pure functions (no server needed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from seta_stream.errors import SeTaStreamError
from seta_stream.prefetch import chunk_bounds
from seta_stream.remote import RemoteOptions, Span, coalesce, is_transient

pytestmark = pytest.mark.remote


def test_coalesce_merges_small_gaps_per_file_only() -> None:
    spans = [Span("a", 0, 100), Span("b", 100, 200), Span("a", 150, 300), Span("a", 10_000, 10_100)]
    reqs = coalesce(spans, gap=64, max_request=1 << 20)
    got = sorted((r.span, r.parts) for r in reqs)
    assert got == [
        (Span("a", 0, 300), (0, 2)),  # gap of 50 <= 64
        (Span("a", 10_000, 10_100), (3,)),
        (Span("b", 100, 200), (1,)),
    ]


def test_coalesce_respects_max_request_and_max_waste() -> None:
    spans = [Span("a", k * 100, k * 100 + 90) for k in range(10)]
    assert len(coalesce(spans, gap=64, max_request=300)) == 4  # 290, 290, 290, 90 bytes
    sparse = [Span("a", k * 100, k * 100 + 80) for k in range(10)]  # 20 gap per 80 useful
    assert len(coalesce(sparse, gap=64, max_request=1 << 20, max_waste=0.1)) == 10
    assert len(coalesce(sparse, gap=64, max_request=1 << 20, max_waste=0.3)) == 1


@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5000), st.integers(1, 500)), max_size=40),
    st.integers(0, 300),
    st.floats(0, 2),
)
def test_coalesce_covers_every_span_once_within_the_waste_bound(
    raw: list[tuple[int, int, int]], gap: int, waste: float
) -> None:
    spans = [Span(str(f), s, s + n) for f, s, n in raw]
    reqs = coalesce(spans, gap=gap, max_request=4000, max_waste=waste)
    assert sorted(k for r in reqs for k in r.parts) == list(range(len(spans)))
    for r in reqs:
        for k in r.parts:
            s = spans[k]
            assert s.path == r.span.path and r.span.start <= s.start and s.end <= r.span.end
        covered = np.zeros(r.span.end - r.span.start, bool)
        for k in r.parts:
            covered[spans[k].start - r.span.start : spans[k].end - r.span.start] = True
        assert (~covered).sum() <= waste * covered.sum() + 1e-9


def test_chunk_bounds_by_count_and_bytes() -> None:
    lengths = np.array([10, 10, 10, 50, 10, 10])
    assert chunk_bounds(lengths, max_samples=2, max_bytes=1000) == [0, 2, 4, 6]
    assert chunk_bounds(lengths, max_samples=10, max_bytes=40) == [0, 3, 4, 6]
    assert chunk_bounds(np.zeros(0, np.int64), max_samples=2, max_bytes=10) == [0]


def test_transient_errors() -> None:
    class Status(Exception):
        def __init__(self, status: int) -> None:
            self.status = status

    assert is_transient(Status(503)) and is_transient(Status(429)) and is_transient(Status(408))
    assert not is_transient(Status(403)) and not is_transient(Status(416))
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())
    assert not is_transient(FileNotFoundError()) and not is_transient(PermissionError())


@pytest.mark.parametrize(
    ("field", "value"),
    [("gap", -1), ("prefetch", 0), ("retries", -1), ("max_waste", -0.5), ("chunk_samples", 0)],
)
def test_options_name_the_bad_field(field: str, value: object) -> None:
    with pytest.raises(SeTaStreamError, match=f"{field}={value}"):
        RemoteOptions(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(SeTaStreamError, match="ignored_range='skip'"):
        RemoteOptions(ignored_range="skip")  # type: ignore[arg-type]
