"""Benchmarks of zswap_core against its Python peers; run ``python benchmarks/run.py``.

``benchmarks._bench`` holds the measuring machinery (also used in-process by
``tests/test_benchmark_regression.py``); ``benchmarks._peers`` the peers it compares
against (a ``dict`` of lz4 blocks, zict).
"""
