"""Throughput and latency benchmark of the module's data path: `python -m bench` (`make bench`).

Shared machines are noisy, so nothing is reported as an absolute alone: every figure is also a
ratio against baselines measured in the same run, with the runs of each kind interleaved so a noisy
spell hits them all. Not a test suite: pytest never collects it.
"""
