"""Tiered memory-mapped field: lazily activated, chunked, LRU-cached, prefetched arrays.

Public API::

    f = create(path, shape, dtype, chunk_rows=None, chunk_bytes=1 MiB, options=None, remote=None)
    f = open(path, mode="r" | "r+", options=None, remote=None, verify=None)
    f.get(index) / f[index] / f.activate(x, y, z) / f.get_flat(e)
    f.batch_get(region | coords (n, ndim) | flat (n,))  -> numpy array
    f.set(index, value) / f[index] = v / f.batch_set(...) ; f.flush() ; f.close()
    f.stats() -> FieldStats ; f.verify() ; f.disk_usage() ; f.drop_os_cache() ; f.refresh()
    one writer at a time (flock), copy-on-write chunks published at flush, a chunk list

    PageCacheModel(cache_cfg).access(addr) -> AccessResult ; .run(trace)   (RTL golden twin)
    LRUCache(budget), StridePrefetcher(streams, depth, window)             (shared policies)

See docs/FIELD.md for the format, the tiers, the prefetcher and the RTL contract.
"""

from .errors import (CorruptChunkError, CorruptHeaderError, FieldClosedError, FieldDtypeError,
                     FieldError, FieldExistsError, FieldIndexError, FieldLockedError,
                     FieldNotFoundError, FieldValueError, LostChunkError, ReadOnlyFieldError)
from .format import ChunkHeader, FieldHeader, chunk_relpath, normalize_dtype
from .policy import Evicted, LRUCache, PrefetchDecision, StridePrefetcher
from .store import (Field, FieldOptions, FieldStats, checked_cast, create, open_field,
                    read_header)
from .trace import AccessResult, PageCacheModel, TraceStats, field_addresses

open = open_field  # noqa: A001  (the issue's API name: field.open(path))

__all__ = [
    "create", "open", "open_field", "read_header", "Field", "FieldOptions", "FieldStats",
    "FieldHeader", "ChunkHeader", "chunk_relpath", "normalize_dtype",
    "LRUCache", "Evicted", "StridePrefetcher", "PrefetchDecision",
    "PageCacheModel", "AccessResult", "TraceStats", "field_addresses",
    "FieldError", "FieldExistsError", "FieldNotFoundError", "CorruptHeaderError",
    "CorruptChunkError", "FieldIndexError", "FieldDtypeError", "ReadOnlyFieldError",
    "FieldClosedError", "FieldLockedError", "FieldValueError", "LostChunkError", "checked_cast",
]
