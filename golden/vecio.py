"""Vector file formats: read, memory-map, stream and (atomically) write.

Supported formats, chosen by the file extension (case-insensitive) unless ``fmt=`` names
one explicitly:

=========  =========================================================  ==========
format     layout (all little-endian)                                 elements
=========  =========================================================  ==========
``fvecs``  per row: int32 ``dim``, then ``dim`` elements (TEXMEX)      float32
``bvecs``  per row: int32 ``dim``, then ``dim`` elements (TEXMEX)      uint8
``ivecs``  per row: int32 ``dim``, then ``dim`` elements (TEXMEX)      int32
``fbin``   int32 ``n``, int32 ``dim``, then ``n*dim`` elements        float32
``u8bin``  same as fbin (DiskANN / big-ann-benchmarks)                uint8
``i8bin``  same as fbin                                               int8
``ibin``   same as fbin                                               int32
``npy``    NumPy ``.npy`` (version 1.0 / 2.0 / 3.0 headers), 2-D      any numeric
=========  =========================================================  ==========

Every file holds ``n >= 1`` rows of ``dim >= 1`` elements: empty files, files with zero
rows and zero-width rows are rejected on read and on write (a ``*vecs`` file cannot
even express a zero-row shape, so the rule is the same for all formats).

Large files
-----------
``read_vectors(path, mmap=True)`` returns a read-only view backed by ``np.memmap``
without reading the data: for ``*bin`` and ``npy`` the view is the plain array after the
header, for ``*vecs`` it is the ``v`` field of a structured ``(int32 dim, elem[dim])``
memmap, i.e. a strided ``(n, dim)`` view that skips the per-row dimension word.
``iter_vectors(path, chunk_rows)`` yields owned, C-contiguous chunks of rows; it never
holds more than one chunk in memory.  ``VectorWriter`` appends chunks to a new file, so a
data set larger than RAM can be produced chunk by chunk.

Errors
------
Anything wrong with a file raises :class:`VectorFileError` (a ``ValueError``) whose
message starts with the file name and says what is wrong: empty file, truncated file or
header, size not a multiple of the row size, inconsistent per-row dimension in ``*vecs``,
header counts that disagree with the file size in ``*bin``, unknown extension, and
(on write) an array whose dtype the format cannot hold.

Writes are atomic: data go to a temporary file in the destination directory, which is
flushed, ``fsync``-ed and then renamed over the destination with ``os.replace``; on any
error the temporary file is removed and the destination is left untouched.

dtype rules on write: float formats (``fvecs``, ``fbin``) take float32 only (a float64
array must be cast explicitly: silent narrowing is refused); integer formats take any
integer (or bool) array whose values all fit the element type, checked chunk by chunk;
``npy`` takes any numeric (bool, integer, float) array and stores it unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .atomic import atomic_open, fsync_dir, mkstemp_for

__all__ = [
    "VectorFileError",
    "FORMATS",
    "VectorFileInfo",
    "detect_format",
    "format_dtype",
    "vector_file_info",
    "read_vectors",
    "iter_vectors",
    "write_vectors",
    "VectorWriter",
    "write_text_atomic",
]


class VectorFileError(ValueError):
    """A vector file (or an array to be written) that is malformed for its format."""

    def __init__(self, path: os.PathLike | str | None, what: str):
        self.path = None if path is None else os.fspath(path)
        self.what = what
        super().__init__(f"{self.path}: {what}" if self.path is not None else what)


# format name -> (family, element dtype or None for npy)
FORMATS: dict[str, tuple[str, np.dtype | None]] = {
    "fvecs": ("vecs", np.dtype("<f4")),
    "bvecs": ("vecs", np.dtype("u1")),
    "ivecs": ("vecs", np.dtype("<i4")),
    "fbin": ("bin", np.dtype("<f4")),
    "u8bin": ("bin", np.dtype("u1")),
    "i8bin": ("bin", np.dtype("i1")),
    "ibin": ("bin", np.dtype("<i4")),
    "npy": ("npy", None),
}

_I32 = np.dtype("<i4")
_BIN_HEADER = 8  # int32 n, int32 dim
_NPY_RESERVED = 128  # bytes reserved for a .npy header written by VectorWriter
_DEFAULT_CHUNK_ROWS = 1 << 16


def detect_format(path: os.PathLike | str, fmt: str | None = None) -> str:
    """The format name for ``path``: ``fmt`` if given, else from the extension."""
    if fmt is not None:
        f = fmt.lower().lstrip(".")
        if f not in FORMATS:
            raise VectorFileError(path, f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
        return f
    ext = Path(os.fspath(path)).suffix.lower().lstrip(".")
    if ext not in FORMATS:
        raise VectorFileError(
            path, f"unknown vector file extension {('.' + ext) if ext else '(none)'!r}; "
                  f"known: {', '.join('.' + k for k in FORMATS)} (or pass fmt=)")
    return ext


def format_dtype(fmt: str) -> np.dtype | None:
    """The element dtype a format stores (``None`` for npy, which stores any dtype)."""
    return FORMATS[detect_format("<format>", fmt)][1]


@dataclass(frozen=True)
class VectorFileInfo:
    """Shape and layout of a vector file, read from its header(s) and size only."""

    path: str
    fmt: str
    n: int
    dim: int
    dtype: np.dtype
    header_bytes: int  # bytes before the first row (0 for *vecs)
    row_bytes: int  # bytes per row on disk (includes the dim word for *vecs)
    file_bytes: int
    fortran_order: bool = False  # npy only

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        raise VectorFileError(path, "no such file") from None
    except IsADirectoryError:  # pragma: no cover - platform dependent
        raise VectorFileError(path, "is a directory") from None


def _read_exact(path: str, offset: int, nbytes: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        b = f.read(nbytes)
    if len(b) != nbytes:
        raise VectorFileError(path, f"truncated: expected {nbytes} bytes at offset {offset}, "
                                    f"got {len(b)}")
    return b


def vector_file_info(path: os.PathLike | str, fmt: str | None = None) -> VectorFileInfo:
    """Validate a file's header and size against its format and return its layout.

    This reads only the header (``*bin``, ``npy``) or the first dimension word
    (``*vecs``); the per-row dimensions of a ``*vecs`` file are checked by the readers.
    """
    p = os.fspath(path)
    f = detect_format(p, fmt)
    family, dt = FORMATS[f]
    size = _file_size(p)
    if size == 0:
        raise VectorFileError(p, f"empty file (a {f} file holds at least one vector)")
    if family == "vecs":
        assert dt is not None
        if size < 4:
            raise VectorFileError(p, f"truncated: {size} bytes, less than one {f} dim word")
        dim = int(np.frombuffer(_read_exact(p, 0, 4), _I32)[0])
        if dim <= 0:
            raise VectorFileError(p, f"first row declares dimension {dim}; must be >= 1")
        row = 4 + dim * dt.itemsize
        if size % row:
            n_full = size // row
            raise VectorFileError(
                p, f"size {size} bytes is not a multiple of the row size {row} bytes "
                   f"(dim {dim} from the first row): {n_full} whole rows and "
                   f"{size - n_full * row} stray bytes; the file is truncated or its rows "
                   f"have inconsistent dimensions")
        return VectorFileInfo(p, f, size // row, dim, dt, 0, row, size)
    if family == "bin":
        assert dt is not None
        if size < _BIN_HEADER:
            raise VectorFileError(p, f"truncated header: {size} bytes, a {f} header is "
                                     f"{_BIN_HEADER} bytes (int32 n, int32 dim)")
        n, dim = (int(v) for v in np.frombuffer(_read_exact(p, 0, _BIN_HEADER), _I32))
        if n <= 0 or dim <= 0:
            raise VectorFileError(p, f"header declares n={n}, dim={dim}; both must be >= 1")
        expect = _BIN_HEADER + n * dim * dt.itemsize
        if size != expect:
            what = "truncated" if size < expect else "has trailing bytes"
            raise VectorFileError(
                p, f"{what}: header declares n={n} x dim={dim} {dt.name} = {expect} bytes "
                   f"with the header, file has {size} bytes (wrong header counts or "
                   f"damaged file)")
        return VectorFileInfo(p, f, n, dim, dt, _BIN_HEADER, dim * dt.itemsize, size)
    # npy
    try:
        with open(p, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                shape, fortran, dtype = np.lib.format._read_array_header(fh, version)
            offset = fh.tell()
    except VectorFileError:
        raise
    except Exception as e:  # numpy raises ValueError / OSError / SyntaxError variants
        raise VectorFileError(p, f"not a valid .npy file: {e}") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise VectorFileError(p, f".npy dtype {dtype} is not numeric")
    if len(shape) != 2:
        raise VectorFileError(p, f".npy array has shape {shape}; vector files are 2-D")
    n, dim = (int(s) for s in shape)
    if n == 0 or dim == 0:
        raise VectorFileError(p, f".npy array has shape {shape}; need at least one row of "
                                 f"at least one element")
    expect = offset + n * dim * dtype.itemsize
    if size != expect:
        what = "truncated" if size < expect else "has trailing bytes"
        raise VectorFileError(p, f"{what}: .npy header declares {shape} {dtype} = {expect} "
                                 f"bytes with the header, file has {size} bytes")
    return VectorFileInfo(p, f, n, dim, dtype, offset, dim * dtype.itemsize, size, bool(fortran))


def _raw_memmap(info: VectorFileInfo) -> np.ndarray:
    """Read-only memmap of a file's rows: (n, dim) for bin/npy, structured (n,) for vecs."""
    if FORMATS[info.fmt][0] == "vecs":
        rec = np.dtype([("d", _I32), ("v", info.dtype, (info.dim,))])
        return np.memmap(info.path, dtype=rec, mode="r", offset=0, shape=(info.n,))
    order = "F" if info.fortran_order else "C"
    return np.memmap(info.path, dtype=info.dtype, mode="r", offset=info.header_bytes,
                     shape=(info.n, info.dim), order=order)


def _check_vecs_dims(info: VectorFileInfo, dims: np.ndarray, first_row: int) -> None:
    bad = np.flatnonzero(dims != info.dim)
    if bad.size:
        r = first_row + int(bad[0])
        raise VectorFileError(
            info.path, f"inconsistent per-row dimension: row {r} declares {int(dims[bad[0]])}, "
                       f"row 0 declares {info.dim}")


def _chunk_rows_for(info: VectorFileInfo, chunk_rows: int | None) -> int:
    if chunk_rows is None:
        # about 64 MiB per chunk
        return max(1, min(info.n, (64 << 20) // max(1, info.row_bytes)))
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return int(chunk_rows)


def read_vectors(path: os.PathLike | str, fmt: str | None = None, *, mmap: bool = False,
                 check: bool = True) -> np.ndarray:
    """Read a whole vector file as an ``(n, dim)`` array.

    ``mmap=False``: an owned, C-contiguous array in native byte order.
    ``mmap=True``: a read-only ``np.memmap``-backed view (no data read); for ``*vecs`` a
    strided view that skips the per-row dimension words.  With ``check=True`` (default) the
    per-row dimensions of a ``*vecs`` file are all verified (one streaming pass over the
    file, no extra memory); ``check=False`` trusts the first row and the file size.
    """
    info = vector_file_info(path, fmt)
    raw = _raw_memmap(info)
    is_vecs = FORMATS[info.fmt][0] == "vecs"
    if mmap:
        if is_vecs:
            if check:
                step = _chunk_rows_for(info, None)
                for a in range(0, info.n, step):
                    _check_vecs_dims(info, np.asarray(raw["d"][a:a + step]), a)
            return raw["v"]
        return raw
    out = np.empty((info.n, info.dim), dtype=info.dtype.newbyteorder("="))
    step = _chunk_rows_for(info, None)
    for a in range(0, info.n, step):
        b = min(info.n, a + step)
        if is_vecs:
            block = raw[a:b]
            if check:
                _check_vecs_dims(info, np.asarray(block["d"]), a)
            out[a:b] = block["v"]
        else:
            out[a:b] = raw[a:b]
    del raw
    return out


def iter_vectors(path: os.PathLike | str, chunk_rows: int | None = None,
                 fmt: str | None = None, *, start: int = 0, stop: int | None = None,
                 check: bool = True) -> Iterator[np.ndarray]:
    """Yield rows ``start..stop`` of a vector file as owned ``(<=chunk_rows, dim)`` arrays.

    The concatenation of the chunks equals ``read_vectors(path)[start:stop]``.  For
    ``*vecs`` each chunk's per-row dimensions are verified (``check=True``) before it is
    yielded.  The file header is validated before the first chunk.
    """
    info = vector_file_info(path, fmt)
    stop = info.n if stop is None else stop
    if not 0 <= start <= stop <= info.n:
        raise ValueError(f"{info.path}: bad row range {start}..{stop} of {info.n}")
    step = _chunk_rows_for(info, chunk_rows)
    is_vecs = FORMATS[info.fmt][0] == "vecs"
    native = info.dtype.newbyteorder("=")
    return _iter(info, start, stop, step, is_vecs, native, check)


def _iter(info, start, stop, step, is_vecs, native, check):
    raw = _raw_memmap(info)
    try:
        for a in range(start, stop, step):
            b = min(stop, a + step)
            if is_vecs:
                block = raw[a:b]
                if check:
                    _check_vecs_dims(info, np.asarray(block["d"]), a)
                yield np.array(block["v"], dtype=native, order="C", copy=True, subok=False)
            else:
                yield np.array(raw[a:b], dtype=native, order="C", copy=True, subok=False)
    finally:
        del raw


# ------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------

def _npy_header(dtype: np.dtype, n: int, dim: int) -> bytes:
    """A version 1.0 .npy header padded to exactly ``_NPY_RESERVED`` bytes."""
    d = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
         "shape": (int(n), int(dim))}
    text = repr(d)
    body_len = _NPY_RESERVED - 10  # magic (6) + version (2) + uint16 length (2)
    if len(text) + 1 > body_len:  # pragma: no cover - only for absurd shapes
        raise VectorFileError(None, f"npy header for shape {(n, dim)} does not fit")
    text = text + " " * (body_len - len(text) - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + np.uint16(body_len).astype("<u2").tobytes() + \
        text.encode("latin1")


def _coerce_chunk(path: str, fmt: str, x: np.ndarray, dim: int | None) -> np.ndarray:
    """Check a chunk for writing to ``fmt`` and return it in the on-disk dtype."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise VectorFileError(path, f"can only write 2-D arrays (rows of vectors), got shape "
                                    f"{x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise VectorFileError(path, f"chunk has {x.shape[1]} columns, the file has dim {dim}")
    dt = FORMATS[fmt][1]
    if dt is None:  # npy
        if x.dtype.hasobject or x.dtype.kind not in "biuf":
            raise VectorFileError(path, f"wrong dtype {x.dtype} for npy: must be numeric")
        return x
    if dt.kind == "f":
        if x.dtype != np.float32:
            raise VectorFileError(path, f"wrong dtype {x.dtype} for {fmt}: must be float32 "
                                        f"(cast explicitly if narrowing is intended)")
        return x.astype(dt, copy=False)
    # integer formats
    if x.dtype.kind not in "biu":
        raise VectorFileError(path, f"wrong dtype {x.dtype} for {fmt}: must be an integer "
                                    f"type whose values fit {dt.name}")
    if x.dtype.kind != "b" and not np.can_cast(x.dtype, dt) and x.size:
        info = np.iinfo(dt)
        lo, hi = int(x.min()), int(x.max())
        if lo < info.min or hi > info.max:
            raise VectorFileError(path, f"values {lo}..{hi} of dtype {x.dtype} do not fit "
                                        f"{fmt} elements ({dt.name}, {info.min}..{info.max})")
    return x.astype(dt, copy=False)


class VectorWriter:
    """Write a vector file chunk by chunk, atomically.

    >>> with VectorWriter("base.bvecs", dim=128) as w:      # doctest: +SKIP
    ...     for chunk in chunks:
    ...         w.write(chunk)

    The dtype is taken from the format (``npy``: from the first chunk, or ``dtype=``).
    Data go to a temporary file next to ``path``; ``close()`` fixes up the header
    (``*bin``: ``n``; ``npy``: the shape), flushes, fsyncs and renames it over ``path``.
    If the ``with`` body raises, or nothing was written, the temporary file is removed and
    ``path`` is not touched (writing zero rows raises :class:`VectorFileError`).
    """

    def __init__(self, path: os.PathLike | str, dim: int | None = None, fmt: str | None = None,
                 dtype: np.typing.DTypeLike | None = None):
        self.path = os.fspath(path)
        self.fmt = detect_format(self.path, fmt)
        self.family, fdt = FORMATS[self.fmt]
        if dtype is not None and fdt is not None and np.dtype(dtype) != fdt.newbyteorder("="):
            raise VectorFileError(self.path, f"wrong dtype {np.dtype(dtype)} for {self.fmt} "
                                             f"(stores {fdt.name})")
        self.dtype: np.dtype | None = fdt if fdt is not None else (
            None if dtype is None else np.dtype(dtype))
        if dim is not None and dim < 1:
            raise VectorFileError(self.path, f"dimension must be >= 1, got {dim}")
        self.dim = dim
        self.n = 0
        fd, self._tmp = mkstemp_for(self.path)
        self._f = os.fdopen(fd, "wb")
        self._closed = False
        self._header_written = False

    def _write_header_placeholder(self) -> None:
        if self.family == "bin":
            self._f.write(b"\0" * _BIN_HEADER)
        elif self.family == "npy":
            self._f.write(b"\0" * _NPY_RESERVED)
        self._header_written = True

    def write(self, x: np.ndarray) -> None:
        """Append the rows of a 2-D array (zero-row chunks are allowed and ignored)."""
        if self._closed:
            raise VectorFileError(self.path, "write after close")
        try:
            x = _coerce_chunk(self.path, self.fmt, x, self.dim)
            if x.shape[1] == 0:
                raise VectorFileError(self.path, "cannot write zero-width rows (dim 0)")
            if self.dim is None:
                self.dim = int(x.shape[1])
            if self.family == "npy":
                if self.dtype is None:
                    self.dtype = x.dtype
                elif x.dtype != self.dtype:
                    raise VectorFileError(self.path, f"chunk dtype {x.dtype} differs from the "
                                                     f"file's {self.dtype}")
            if not self._header_written:
                self._write_header_placeholder()
            if x.shape[0] == 0:
                return
            if self.family == "vecs":
                rec = np.empty(x.shape[0], dtype=[("d", _I32), ("v", self.dtype, (self.dim,))])
                rec["d"] = self.dim
                rec["v"] = x
                self._f.write(rec.tobytes())
            else:
                self._f.write(np.ascontiguousarray(x).tobytes())
            self.n += int(x.shape[0])
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Discard everything written; ``path`` is left untouched."""
        if self._closed:
            return
        self._closed = True
        try:
            self._f.close()
        finally:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self.n == 0:
                raise VectorFileError(self.path, "no rows written; empty vector files are not "
                                                 "allowed")
            if self.family == "bin":
                if self.n > np.iinfo(np.int32).max:
                    raise VectorFileError(self.path, f"{self.n} rows overflow the int32 header")
                self._f.seek(0)
                self._f.write(np.array([self.n, self.dim], dtype=_I32).tobytes())
            elif self.family == "npy":
                assert self.dtype is not None and self.dim is not None
                self._f.seek(0)
                self._f.write(_npy_header(self.dtype, self.n, self.dim))
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self._tmp, self.path)
            self._closed = True
            fsync_dir(self.path)  # make the rename durable
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> "VectorWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:  # never leave temporary files behind
        try:
            if not self._closed:
                self.abort()
        except Exception:
            pass


def write_vectors(path: os.PathLike | str, x: np.ndarray, fmt: str | None = None, *,
                  chunk_rows: int = _DEFAULT_CHUNK_ROWS) -> None:
    """Write a whole ``(n, dim)`` array (``n, dim >= 1``) atomically; see module docstring."""
    p = os.fspath(path)
    f = detect_format(p, fmt)
    x = np.asarray(x)
    if x.ndim != 2:
        raise VectorFileError(p, f"can only write 2-D arrays (rows of vectors), got shape "
                                 f"{x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise VectorFileError(p, f"cannot write an empty array of shape {x.shape}: a vector "
                                 f"file holds at least one row of at least one element")
    _coerce_chunk(p, f, x[:0], None)  # dtype check before creating any file
    with VectorWriter(p, dim=int(x.shape[1]), fmt=f, dtype=x.dtype if f == "npy" else None) as w:
        for a in range(0, x.shape[0], chunk_rows):
            w.write(x[a:a + chunk_rows])


def write_text_atomic(path: os.PathLike | str, text: str) -> None:
    """Write a small text file (e.g. a quantiser scheme) with the same atomic protocol."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
