"""Benchmarks: `./dev bench [NAME…]` runs them and prints one table each."""
