"""Measurement tools: the speed bench, concurrency, and what a sweep costs."""
