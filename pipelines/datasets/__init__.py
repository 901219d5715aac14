"""Data sets for the demo and the benchmarks: the synthetic warehouse and MovieLens import. Never used by a night."""
