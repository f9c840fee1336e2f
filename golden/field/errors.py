"""Exceptions of the field library: every bad input or damaged file gets its own class."""

from __future__ import annotations

__all__ = [
    "FieldError",
    "FieldExistsError",
    "FieldNotFoundError",
    "CorruptHeaderError",
    "CorruptChunkError",
    "FieldIndexError",
    "FieldDtypeError",
    "ReadOnlyFieldError",
    "FieldClosedError",
    "FieldLockedError",
    "FieldValueError",
    "LostChunkError",
]


class FieldError(Exception):
    """Base class of every error raised by :mod:`proxima.golden.field`."""


class FieldExistsError(FieldError, FileExistsError):
    """``create`` was asked to write a field where one already exists."""


class FieldNotFoundError(FieldError, FileNotFoundError):
    """``open`` found no field header at the given path (locally or remotely)."""


class CorruptHeaderError(FieldError):
    """The field header is damaged, truncated, of an unknown version or inconsistent."""


class CorruptChunkError(FieldError):
    """A chunk file is damaged: bad magic, wrong chunk, foreign field, bad size or checksum."""


class FieldIndexError(FieldError, IndexError):
    """An index or region outside the field, or of the wrong number of dimensions."""


class FieldDtypeError(FieldError, TypeError):
    """A dtype the on-disk format cannot hold (only fixed-size numeric scalars are allowed)."""


class ReadOnlyFieldError(FieldError):
    """A write on a field opened read-only."""


class FieldClosedError(FieldError):
    """An operation on a closed field."""


class FieldLockedError(FieldError):
    """The field is already open for writing (by another process or another ``Field``)."""


class FieldValueError(FieldError, ValueError):
    """A value that the field's dtype cannot hold exactly (overflow, NaN or infinity into an
    integer field, a fraction into an integer field, a non-zero imaginary part into a real
    field, a finite value that overflows a float field)."""


class LostChunkError(CorruptChunkError):
    """A chunk the field's chunk list records has no file (deleted or lost)."""
