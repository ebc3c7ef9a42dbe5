"""``zswap advise``'s engine: which zswap settings, and what would they save.

For live processes, cgroups, the whole host or files: a census of the candidate pages
(``_scan``), a uniform sample of them (or all), compressed by every compressor in
worker processes, and population estimates with confidence intervals for every
compressor x allocator pair the chosen kernel profile has: codec ratio, pool density,
saved bytes (zswap's metadata counted), codec CPU cost per GiB, a recommendation and
what fits under ``max_pool_percent``.

>>> from zswap_core.advise import Request, advise       # doctest: +SKIP
>>> report = advise(Request(pids=[1234], kernel="6.18"))  # doctest: +SKIP
>>> report["recommendation"]["compressor"]                # doctest: +SKIP
'zstd'
"""

from __future__ import annotations

from ._engine import (
    DEFAULT_CPU_BUDGET,
    DEFAULT_SAMPLE_BYTES,
    OBJECTIVES,
    AdviseError,
    Request,
    advise,
    recommend,
    what_if,
)
from ._estimate import (
    KIND_NORMAL,
    KIND_SAME,
    KIND_ZERO,
    CodecSample,
    Estimate,
    Interval,
    PoolModel,
    Sample,
    StorePolicy,
    estimate_pair,
    page_kind,
)
from ._measure import BatchResult, CodecError, Codecs, compress_batch

__all__ = [
    "DEFAULT_CPU_BUDGET",
    "DEFAULT_SAMPLE_BYTES",
    "KIND_NORMAL",
    "KIND_SAME",
    "KIND_ZERO",
    "OBJECTIVES",
    "AdviseError",
    "BatchResult",
    "CodecError",
    "CodecSample",
    "Codecs",
    "Estimate",
    "Interval",
    "PoolModel",
    "Request",
    "Sample",
    "StorePolicy",
    "advise",
    "compress_batch",
    "estimate_pair",
    "page_kind",
    "recommend",
    "what_if",
]
