"""Benchmarks: `make bench` runs them all against a throwaway database (bench/common.py)."""
