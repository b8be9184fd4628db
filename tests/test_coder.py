"""Entropy coding with frozen tables (codedvision.coder): exact round trips, escapes included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from codedvision import coder
from codedvision.coder import VALUE_LIMIT, FrozenTables


@st.composite
def tables_and_symbols(draw):
    """Random tables (radius 0..20, positive frequencies, 0-padded rows as the codec stores them)
    and values with table ids, many of them escapes up to +-VALUE_LIMIT."""
    num_tables = draw(st.integers(1, 6))
    radius = np.array(draw(st.lists(st.integers(0, 20), min_size=num_tables,
                                    max_size=num_tables)), dtype=np.int32)
    width = int(2 * radius.max() + 2)
    freqs = np.zeros((num_tables, width), dtype=np.int32)
    for t, r in enumerate(radius):
        row = draw(arrays(np.int32, int(2 * r + 2), elements=st.integers(1, 2**16)))
        freqs[t, : 2 * r + 2] = row
    n = draw(st.integers(0, 300))
    table_ids = draw(arrays(np.int64, n, elements=st.integers(0, num_tables - 1)))
    near = st.integers(-25, 25)
    far = st.integers(-VALUE_LIMIT, VALUE_LIMIT)
    edge = st.sampled_from([-VALUE_LIMIT, VALUE_LIMIT, -VALUE_LIMIT + 1, VALUE_LIMIT - 1])
    values = draw(arrays(np.int64, n, elements=st.one_of(near, near, far, edge)))
    return FrozenTables(freqs, radius), values, table_ids


@settings(max_examples=200, deadline=None)
@given(case=tables_and_symbols())
def test_decode_returns_the_encoded_values(case):
    tables, values, table_ids = case
    enc = coder.RangeEncoder()
    coder.encode(enc, values, table_ids, tables)
    compressed = enc.get_compressed()
    out = coder.decode(coder.RangeDecoder(compressed), table_ids, tables)
    assert out.dtype == np.int64
    assert np.array_equal(out, values)


@settings(max_examples=50, deadline=None)
@given(case=tables_and_symbols(), more=st.lists(st.integers(-VALUE_LIMIT, VALUE_LIMIT),
                                                 min_size=1, max_size=50))
def test_two_coded_blocks_in_one_stream_decode_in_order(case, more):
    """The codec codes z then y into one stream: each block must come back intact."""
    tables, values, table_ids = case
    more = np.array(more, dtype=np.int64)
    more_ids = np.zeros(len(more), dtype=np.int64)
    enc = coder.RangeEncoder()
    coder.encode(enc, values, table_ids, tables)
    coder.encode(enc, more, more_ids, tables)
    dec = coder.RangeDecoder(enc.get_compressed())
    assert np.array_equal(coder.decode(dec, table_ids, tables), values)
    assert np.array_equal(coder.decode(dec, more_ids, tables), more)


def test_values_beyond_the_limit_are_refused():
    tables = FrozenTables(np.ones((1, 4), np.int32), np.array([1]))
    with pytest.raises(ValueError, match="codable range"):
        coder.encode(coder.RangeEncoder(), np.array([VALUE_LIMIT + 1]), np.array([0]), tables)


def test_tables_need_positive_frequencies():
    with pytest.raises(ValueError, match="positive"):
        FrozenTables(np.array([[1, 0, 1, 1]], np.int32), np.array([1]))


def test_likely_values_cost_fewer_bits():
    """The tables are used: a peaked table codes its peak in far fewer bits than uniform data."""
    freqs = np.array([[1, 1, 1000, 1, 1, 1]], np.int32)  # radius 2, escape last
    tables = FrozenTables(freqs, np.array([2]))
    ids = np.zeros(4000, np.int64)

    def size(values):
        enc = coder.RangeEncoder()
        coder.encode(enc, values, ids, tables)
        return enc.get_compressed().nbytes

    rng = np.random.default_rng(0)
    assert size(np.zeros(4000, np.int64)) * 20 < size(rng.integers(-2, 3, 4000))
