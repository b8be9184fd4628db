"""Entropy coding of integer symbols with frozen integer tables (constriction's range coder).

Symbols that share a table are coded together, tables in increasing order, each group in
raster order; encoder and decoder derive the same grouping from data both have (the channel
index, or the scale index from the exact hyper-synthesis). A value outside its table's radius
is coded as the table's escape symbol, and after all groups its value is coded with a uniform
model over ESCAPE_RANGE.
"""

from __future__ import annotations

import numpy as np
import constriction

# constriction is an extension module: its submodules are attributes, not importable names
Categorical = constriction.stream.model.Categorical
Uniform = constriction.stream.model.Uniform
RangeEncoder = constriction.stream.queue.RangeEncoder
RangeDecoder = constriction.stream.queue.RangeDecoder

ESCAPE_BITS = 16
ESCAPE_RANGE = 2**ESCAPE_BITS
VALUE_LIMIT = ESCAPE_RANGE // 2 - 1  # encoders clamp values to +-VALUE_LIMIT


class FrozenTables:
    """A set of integer frequency tables: freqs (T,L) int32, table t over -radius[t]..radius[t]
    followed by an escape symbol."""

    def __init__(self, freqs: np.ndarray, radius: np.ndarray):
        self.radius = np.asarray(radius, dtype=np.int64)
        self.models = []
        for t, r in enumerate(self.radius):
            row = np.asarray(freqs[t, : 2 * r + 2], dtype=np.float64)
            if row.min() <= 0:
                raise ValueError("frozen tables must have positive frequencies")
            self.models.append(Categorical(row / row.sum(), perfect=False))

    def __len__(self) -> int:
        return len(self.models)


def _groups(table_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The coding order: `order`, the positions sorted by table (stable, so each table's
    positions stay in stream order), the sorted ids, and each used table's id and start/end in
    `order`. One sort, no np.unique re-sort. Ids that fit in int16 are sorted as int16: numpy's
    stable sort is then a radix sort, ~15x faster than on int64 (the same order)."""
    small = len(table_ids) and 0 <= table_ids.min() and table_ids.max() < 2**15
    order = np.argsort(table_ids.astype(np.int16) if small else table_ids, kind="stable")
    ids = table_ids[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ids)) + 1] if len(ids) else np.zeros(0, np.int64)
    bounds = np.r_[starts, len(ids)]
    return order, ids, ids[starts], bounds


def encode(encoder: RangeEncoder, values: np.ndarray, table_ids: np.ndarray,
           tables: FrozenTables) -> None:
    """Append flat integer `values` (|v| <= VALUE_LIMIT), each coded with tables[table_ids]."""
    values = np.asarray(values, dtype=np.int64).ravel()
    table_ids = np.asarray(table_ids, dtype=np.int64).ravel()
    order, ids, used, bounds = _groups(table_ids)
    # symbols of every value at once, in coding order; Python only loops over the tables
    v, r = values[order], tables.radius[ids]
    esc = np.abs(v) > r
    sym = np.where(esc, 2 * r + 1, v + r).astype(np.int32)
    models = tables.models
    for k, t in enumerate(used.tolist()):
        encoder.encode(sym[bounds[k] : bounds[k + 1]], models[t])
    esc_values = v[esc]
    if len(esc_values):
        if np.abs(esc_values).max() > VALUE_LIMIT:
            raise ValueError("value out of the codable range")
        encoder.encode((esc_values + ESCAPE_RANGE // 2).astype(np.int32), Uniform(ESCAPE_RANGE))


def decode(decoder: RangeDecoder, table_ids: np.ndarray, tables: FrozenTables) -> np.ndarray:
    """Inverse of encode: the flat int64 values, in the order of table_ids."""
    table_ids = np.asarray(table_ids, dtype=np.int64).ravel()
    order, ids, used, bounds = _groups(table_ids)
    models = tables.models
    counts = np.diff(bounds).tolist()
    parts = [decoder.decode(models[t], n) for t, n in zip(used.tolist(), counts)]
    sym = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
    r = tables.radius[ids]
    v = sym - r
    esc = sym == 2 * r + 1
    n_esc = int(esc.sum())
    if n_esc:
        v[esc] = decoder.decode(Uniform(ESCAPE_RANGE), n_esc).astype(np.int64) - ESCAPE_RANGE // 2
    out = np.empty(len(table_ids), dtype=np.int64)
    out[order] = v
    return out
