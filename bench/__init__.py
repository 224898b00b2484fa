"""Benchmarks on the real stack. Each module prints its figures and writes JSON to bench/results/."""
