"""Which generator makes which dataset, how many rows each gets, and the table checksum.

Scale rule (``--scale ROWS``, documented in docs/synthetic-data.md):

* fact tables and the enterprise registry (the master list of four fact tables): ``ROWS`` rows;
* ``transit_stations``: ``ROWS // 100`` clamped to 100..5,000;
* ``medical_institutions``: ``ROWS // 200`` clamped to 50..2,000;
* ``venues``: ``ceil(ROWS / 500)``, at least 30, so each venue reports on at most ~500 of the
  1,003 days and ``(venue_id, date)`` stays unique in ``venue_daily_visitors``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from sandbox.errors import ConfigError
from sandbox.synth import culture, finance, health, transport
from sandbox.synth.base import Builder, Columns, SynthContext, conform

Generator = Callable[[Builder], Columns]

GENERATORS: dict[str, Generator] = {
    "enterprise_registry": finance.enterprise_registry,
    "enterprise_tax": finance.enterprise_tax,
    "social_insurance": finance.social_insurance,
    "penalties": finance.penalties,
    "sme_loans": finance.sme_loans,
    "transit_stations": transport.transit_stations,
    "transit_trips": transport.transit_trips,
    "taxi_trips": transport.taxi_trips,
    "road_accidents": transport.road_accidents,
    "medical_institutions": health.medical_institutions,
    "outpatient_visits": health.outpatient_visits,
    "inpatient_settlements": health.inpatient_settlements,
    "venues": culture.venues,
    "venue_daily_visitors": culture.venue_daily_visitors,
    "hotel_stays": culture.hotel_stays,
}

REFERENCE_ROWS: dict[str, Callable[[int], int]] = {
    "transit_stations": lambda scale: min(max(scale // 100, 100), 5_000),
    "medical_institutions": lambda scale: min(max(scale // 200, 50), 2_000),
    "venues": lambda scale: max(30, math.ceil(scale / 500)),
}


def rows_for(dataset_id: str, scale: int) -> int:
    """Rows of ``dataset_id`` at ``scale`` (the scale rule above)."""
    if scale < 1:
        raise ConfigError("The scale must be at least 1 row.", hint="Pass --scale ROWS with ROWS >= 1.")
    rule = REFERENCE_ROWS.get(dataset_id)
    return rule(scale) if rule else scale


def generate_frame(ctx: SynthContext, dataset_id: str) -> pd.DataFrame:
    """Generate one dataset as a DataFrame that satisfies its policy (with ``_rank`` if it has a unit)."""
    dataset = ctx.catalog.dataset(dataset_id)
    try:
        generator = GENERATORS[dataset_id]
    except KeyError:
        raise ConfigError(
            f"No synthetic generator for dataset {dataset_id!r}.",
            hint=f"Known generators: {', '.join(sorted(GENERATORS))}.",
        ) from None
    builder = Builder(ctx, dataset, rows_for(dataset_id, ctx.scale))
    columns = generator(builder)
    return conform(dataset, columns, builder.rng("_rank"))


def frame_checksum(frame: pd.DataFrame) -> str:
    """SHA-256 over the table's values in row order (same rows, same order -> same digest)."""
    digest = hashlib.sha256()
    digest.update("|".join(f"{c}:{frame[c].dtype}" for c in frame.columns).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64).tobytes())
    return digest.hexdigest()
