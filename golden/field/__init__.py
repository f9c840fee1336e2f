"""Tiered memory-mapped field: lazily activated, chunked, LRU-cached, prefetched arrays."""
