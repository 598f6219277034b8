"""Benchmarks: each runs the product beside its floor in one run and prints the ratio."""
