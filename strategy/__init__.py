"""Strategies: market data in, trade signals out; no I/O."""
