"""The host link protocol: frames, CRC, commands and the receiver's behaviour (the spec).

Both ends follow this module: the RTL (:mod:`proxima.hdl.link.framing`,
:mod:`proxima.hdl.board`) and the host driver (:mod:`proxima.fpga.host`).  It imports neither.

Frame (all integers little-endian)::

    SOF (0xA5) | type u8 | seq u8 | len u16 | payload (len bytes) | crc u16

``crc`` is CRC-16/IBM-3740 (a.k.a. CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no
reflection, no final XOR) over ``type, seq, len, payload`` (:func:`crc16`).  There is no byte
stuffing: a receiver hunts for SOF, and a frame whose CRC fails is dropped whole.

Receiver rules (:class:`Receiver` is the executable form; the RTL matches it byte for byte):

* HUNT: bytes other than SOF are *garbage*.  A run of garbage is reported once, as an
  ``ERR_GARBAGE`` event, when the next SOF arrives or when the line goes idle for the
  timeout -- unless the run follows an error event (then it is the rest of a bad frame,
  skipped silently; the next good frame ends that quiet period).
* ``len > MAX_PAYLOAD``: ``ERR_OVERSIZE`` as soon as the length is in, then HUNT.
* a gap of more than the timeout inside a frame: ``ERR_TIMEOUT`` (truncated frame), HUNT.
* after the CRC bytes: ``ERR_CRC`` if the CRC does not match; else ``ERR_TYPE`` if the type is
  not a command; else ``ERR_LENGTH`` if ``len`` is not allowed for the type (:func:`length_ok`);
  else the frame is executed.  Every error event gets an error reply (type ``T_ERROR``, the
  frame's ``seq`` and payload ``code u8, type u8``: the bad frame's seq and type as far as
  they were received, 0 otherwise and for garbage).  Nothing is executed from a bad frame, so
  the store is never written by one.  The receiver takes no byte while the decoder answers;
  bytes wait in the board's RX FIFO (512 bytes), so a host must not have more than that
  unanswered.

Commands (request type -> reply type ``type | 0x80``) and their payloads (u32 unless
noted): IDENTIFY ``-`` -> :data:`IDENT_FIELDS`; CLEAR_STORE ``-`` -> ``-``; WRITE_STORE
``addr, words...`` (whole store words, :func:`store_map`) -> ``crc u16`` of the words read
back; READ_STORE ``addr, count`` -> the words; SET_GEOMETRY ``entry``, the geometry registers
(:data:`proxima.golden.layout.GEOMETRY_FIELDS`, u32 each: ``n, hot, gap_width, ...``, as
:meth:`~proxima.golden.layout.Layout.registers`), the entry code (``code_bytes`` bytes) ->
``-`` (:func:`geometry_payload`; refused with ``ERR_GEOMETRY`` unless
:func:`geometry_fits`); WRITE_CODEBOOK ``first entry u16, centroids
(dsub bytes each)`` -> ``-``; SUBMIT ``tag u16, query (dim bytes)`` -> ``tag u16``;
READ_RESULT ``-`` -> a record (:func:`result_record_bytes`) or nothing; READ_COUNTERS ``-``
-> :data:`LINK_COUNTERS`; SOFT_RESET ``-`` -> ``-``.  A valid command can still be refused
(``ERR_BUSY``, ``ERR_RANGE``, ``ERR_FULL``, ``ERR_GEOMETRY``), again with an error reply and
no effect.

Version 2 (the board on the multi-queue accelerator): IDENTIFY adds ``queues``,
``store_pages``, ``code_bytes``, ``hot_copies``; SET_GEOMETRY carries the entry's PQ code;
records add the accesses by kind and the context; the store follows the NAND controller's
map.  Version 3: SET_GEOMETRY carries every geometry register (one bitstream serves every
image whose geometry fits its store); IDENTIFY's ``n_max``, ``hot``, ``gap_width`` are the
nominal image the store was sized for (the registers' reset values).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "geometry_payload", "geometry_payload_bytes", "parse_geometry_payload", "geometry_fits",
    "SOF", "MAX_PAYLOAD", "PROTOCOL_VERSION", "MAGIC", "crc16", "encode_frame", "Frame",
    "Receiver", "Event", "ERRORS", "ERROR_NAMES", "COMMANDS", "T_ERROR", "length_ok",
    "IDENT_FIELDS", "LINK_COUNTERS", "ENGINE_COUNTERS", "result_record_bytes",
    "decode_result", "store_map", "store_pages", "config_hash", "TIMEOUT_BITS", "reply_type",
    "RECORD_COUNTERS", "READ_KIND_COUNTERS",
]

SOF = 0xA5
#: largest payload a receiver accepts (a store write: 4-byte address + 256 data bytes)
MAX_PAYLOAD = 260
PROTOCOL_VERSION = 3
MAGIC = 0x42585250  # b"PRXB" little-endian
#: inter-byte timeout inside a frame (and the idle time that ends a garbage run), in bit
#: times of the UART
TIMEOUT_BITS = 160

# command types
T_IDENTIFY, T_WRITE_STORE, T_READ_STORE, T_SET_GEOMETRY, T_WRITE_CODEBOOK = 0x01, 0x02, 0x03, 0x04, 0x05
T_CLEAR_STORE = 0x06
T_SUBMIT, T_READ_RESULT, T_READ_COUNTERS, T_SOFT_RESET = 0x10, 0x11, 0x12, 0x1F
T_ERROR = 0xFF
COMMANDS = {
    "identify": T_IDENTIFY, "write_store": T_WRITE_STORE, "read_store": T_READ_STORE,
    "set_geometry": T_SET_GEOMETRY, "write_codebook": T_WRITE_CODEBOOK, "submit": T_SUBMIT,
    "read_result": T_READ_RESULT, "read_counters": T_READ_COUNTERS, "soft_reset": T_SOFT_RESET,
    "clear_store": T_CLEAR_STORE,
}

#: commands of the engine: a board built without one (IDENTIFY reports ``k == 0``) treats
#: them as unknown types
ENGINE_COMMANDS = (T_SET_GEOMETRY, T_WRITE_CODEBOOK, T_SUBMIT, T_READ_RESULT)

# error codes
ERR_CRC, ERR_TYPE, ERR_LENGTH, ERR_TIMEOUT, ERR_OVERSIZE, ERR_GARBAGE = 1, 2, 3, 4, 5, 6
ERR_BUSY, ERR_RANGE, ERR_FULL, ERR_GEOMETRY = 7, 8, 9, 10
ERRORS = {"crc": ERR_CRC, "type": ERR_TYPE, "length": ERR_LENGTH, "timeout": ERR_TIMEOUT,
          "oversize": ERR_OVERSIZE, "garbage": ERR_GARBAGE, "busy": ERR_BUSY,
          "range": ERR_RANGE, "full": ERR_FULL, "geometry": ERR_GEOMETRY}
ERROR_NAMES = {v: k for k, v in ERRORS.items()}

#: IDENTIFY reply: (name, bytes) in order
IDENT_FIELDS = (
    ("magic", 4), ("version", 1), ("config_hash", 4), ("store_words", 4), ("beat_bytes", 1),
    ("max_payload", 2), ("query_slots", 1), ("result_slots", 1), ("n_max", 4), ("hot", 4),
    ("gap_width", 1), ("dim", 2), ("k", 1), ("clock_hz", 4), ("baud", 4),
    ("queues", 2), ("store_pages", 4), ("code_bytes", 2), ("hot_copies", 1),
)
#: READ_COUNTERS reply: u32 each, in order (link statistics and status)
LINK_COUNTERS = ("frames_ok", "errors", "crc_errors", "garbage_bytes", "submitted",
                 "completed", "queued", "results_ready", "status")
#: per-query counters of a result record, u32 each (the engine's COUNTER_NAMES)
ENGINE_COUNTERS = ("hops", "pq_dists", "exact_dists", "checks", "inserted", "final_T",
                   "final_reranked", "cycles")
#: the query's NAND accesses by kind (:data:`proxima.golden.layout.EVENT_KINDS`)
READ_KIND_COUNTERS = ("frame_reads", "code_reads", "raw_reads")
#: the counters of a result record, u32 each, in order
RECORD_COUNTERS = ENGINE_COUNTERS + READ_KIND_COUNTERS


def reply_type(t: int) -> int:
    return t | 0x80


# ---- CRC -------------------------------------------------------------------------------
def _crc_table() -> list[int]:
    out = []
    for b in range(256):
        c = b << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else c << 1
        out.append(c & 0xFFFF)
    return out


_TABLE = _crc_table()
#: parameters of :func:`crc16` for :class:`amaranth.lib.crc.Algorithm`
CRC16_PARAMS = dict(crc_width=16, polynomial=0x1021, initial_crc=0xFFFF, reflect_input=False,
                    reflect_output=False, xor_output=0)


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/IBM-3740 of ``data`` (continue a running CRC by passing it as ``crc``)."""
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[(crc >> 8) ^ b]
    return crc


# ---- frames ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


def encode_frame(ftype: int, seq: int, payload: bytes = b"") -> bytes:
    """The bytes of one frame."""
    if len(payload) > 0xFFFF:
        raise ValueError("payload longer than 65535 bytes")
    body = struct.pack("<BBH", ftype & 0xFF, seq & 0xFF, len(payload)) + bytes(payload)
    return bytes([SOF]) + body + struct.pack("<H", crc16(body))


def length_ok(ftype: int, n: int, *, beat_bytes: int, dim: int, dsub: int,
              code_bytes: int) -> bool:
    """Whether a command of type ``ftype`` may carry ``n`` payload bytes (``code_bytes``:
    the PQ code size, IDENTIFY's ``code_bytes``)."""
    if ftype in (T_IDENTIFY, T_READ_RESULT, T_READ_COUNTERS, T_SOFT_RESET, T_CLEAR_STORE):
        return n == 0
    if ftype == T_WRITE_STORE:
        return n > 4 and (n - 4) % beat_bytes == 0
    if ftype == T_READ_STORE:
        return n == 8
    if ftype == T_SET_GEOMETRY:
        return n == geometry_payload_bytes(code_bytes)
    if ftype == T_WRITE_CODEBOOK:
        return n > 2 and (n - 2) % dsub == 0
    if ftype == T_SUBMIT:
        return n == 2 + dim
    return False


@dataclass(frozen=True)
class Event:
    """What the receiver hands to the command decoder: a good frame (``error == 0``) or an
    error with the bad frame's ``type`` and ``seq`` as far as they were received (0 for
    garbage and for fields not received before a timeout)."""

    error: int
    type: int
    seq: int
    payload: bytes = b""


class Receiver:
    """Byte-level model of the frame receiver (the spec the RTL follows).

    Feed bytes with :meth:`feed` and line idle periods longer than the timeout with
    :meth:`idle`; both return the events produced.  ``valid_length(type, n)`` decides
    ``ERR_TYPE`` (None: unknown type) and ``ERR_LENGTH`` (False)."""

    def __init__(self, valid_length=None, max_payload: int = MAX_PAYLOAD):
        self.valid_length = valid_length or (lambda t, n: True)
        self.max_payload = max_payload
        self.state = "hunt"
        self.quiet = False
        self.garbage = False
        self.hdr = b""
        self.payload = bytearray()
        self.crc = b""
        self.garbage_bytes = 0

    def _err(self, code, ftype=0, seq=0):
        self.quiet = True
        return Event(code, ftype, seq)

    def idle(self) -> list[Event]:
        out = []
        if self.state == "hunt":
            if self.garbage:
                self.garbage = False
                out.append(self._err(ERR_GARBAGE))
        else:
            t, s = (self.hdr[0] if len(self.hdr) > 0 else 0), (self.hdr[1] if len(self.hdr) > 1 else 0)
            out.append(self._err(ERR_TIMEOUT, t, s))
            self.state = "hunt"
        return out

    def feed(self, data: bytes) -> list[Event]:
        out = []
        for b in data:
            out += self._byte(b)
        return out

    def _byte(self, b: int) -> list[Event]:
        out = []
        if self.state == "hunt":
            if b == SOF:
                if self.garbage:
                    self.garbage = False
                    out.append(self._err(ERR_GARBAGE))
                self.state, self.hdr, self.payload = "hdr", b"", bytearray()
            else:
                self.garbage_bytes += 1
                if not self.quiet:
                    self.garbage = True
            return out
        if self.state == "hdr":
            self.hdr += bytes([b])
            if len(self.hdr) == 4:
                n = self.hdr[2] | self.hdr[3] << 8
                if n > self.max_payload:
                    self.state = "hunt"
                    out.append(self._err(ERR_OVERSIZE, self.hdr[0], self.hdr[1]))
                else:
                    self.state, self.crc = ("pay" if n else "crc"), b""
            return out
        if self.state == "pay":
            self.payload.append(b)
            if len(self.payload) == (self.hdr[2] | self.hdr[3] << 8):
                self.state, self.crc = "crc", b""
            return out
        # crc
        self.crc += bytes([b])
        if len(self.crc) < 2:
            return out
        self.state = "hunt"
        got = self.crc[0] | self.crc[1] << 8
        t, s = self.hdr[0], self.hdr[1]
        if got != crc16(self.hdr + bytes(self.payload)):
            return [self._err(ERR_CRC, t, s)]
        ok = self.valid_length(t, len(self.payload))
        if ok is None:
            return [self._err(ERR_TYPE, t, s)]
        if not ok:
            return [self._err(ERR_LENGTH, t, s)]
        self.quiet = False
        return [Event(0, t, s, bytes(self.payload))]


class FrameParser:
    """Incremental parser of *reply* frames on the host side: :meth:`feed` bytes, get the
    complete frames with a good CRC; anything else is skipped (counted in ``skipped``)."""

    def __init__(self):
        self.buf = bytearray()
        self.skipped = 0

    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        out = []
        while True:
            i = self.buf.find(bytes([SOF]))
            if i < 0:
                self.skipped += len(self.buf)
                self.buf.clear()
                return out
            if i:
                self.skipped += i
                del self.buf[:i]
            if len(self.buf) < 5:
                return out
            t, s, n = struct.unpack_from("<BBH", self.buf, 1)
            if n > 0xFFFF or len(self.buf) < 7 + n:
                if n > 4 * MAX_PAYLOAD:  # impossible reply: resync
                    self.skipped += 1
                    del self.buf[:1]
                    continue
                return out
            body = bytes(self.buf[1:5 + n])
            got = self.buf[5 + n] | self.buf[6 + n] << 8
            if got != crc16(body):
                self.skipped += 1
                del self.buf[:1]
                continue
            out.append(Frame(t, s, body[4:]))
            del self.buf[:7 + n]


# ---- payload formats -------------------------------------------------------------------
def result_record_bytes(k: int) -> int:
    """Bytes of a READ_RESULT record: tag u16, ``k`` x (id u32, dist u32; unused entries
    all ones), the :data:`RECORD_COUNTERS` (u32 each: the engine's counters, then the
    query's NAND accesses by kind), count u8, flags u8 (bit 0 converged, bit 1 error in
    this query), context u8 (the search context that ran the query)."""
    return 2 + 8 * k + 4 * len(RECORD_COUNTERS) + 3


def decode_result(payload: bytes, k: int) -> dict:
    """A result record -> ``{tag, ids, dists, counters, reads, context, converged,
    error}`` (``reads``: accesses by kind, keyed by :data:`READ_KIND_COUNTERS`)."""
    if len(payload) != result_record_bytes(k):
        raise ValueError(f"result record of {len(payload)} bytes, expected "
                         f"{result_record_bytes(k)}")
    tag, = struct.unpack_from("<H", payload, 0)
    pairs = struct.unpack_from(f"<{2 * k}I", payload, 2)
    off = 2 + 8 * k
    cnt = struct.unpack_from(f"<{len(RECORD_COUNTERS)}I", payload, off)
    count, flags, context = payload[-3], payload[-2], payload[-1]
    ne = len(ENGINE_COUNTERS)
    return {"tag": tag, "ids": list(pairs[0:2 * count:2]), "dists": list(pairs[1:2 * count:2]),
            "counters": dict(zip(ENGINE_COUNTERS, cnt[:ne])),
            "reads": dict(zip(READ_KIND_COUNTERS, cnt[ne:])), "context": context,
            "converged": bool(flags & 1), "error": bool(flags & 2)}


def geometry_payload_bytes(code_bytes: int) -> int:
    """SET_GEOMETRY's payload size: the entry, the registers (u32 each) and the code."""
    from proxima.golden.layout import GEOMETRY_FIELDS
    return 4 * (1 + len(GEOMETRY_FIELDS)) + int(code_bytes)


def geometry_payload(layout, entry: int, entry_code: bytes = b"") -> bytes:
    """SET_GEOMETRY's payload for an image of ``layout`` (the entry's PQ code zero padded
    to ``code_bytes``)."""
    C = layout.cfg.pq_code_bytes
    code = bytes(entry_code)[:C].ljust(C, b"\0")
    return struct.pack(f"<{1 + len(layout.registers())}I", int(entry),
                       *layout.registers()) + code


def parse_geometry_payload(payload: bytes):
    """``(entry, Geometry)`` of a SET_GEOMETRY payload (the code bytes ignored)."""
    from proxima.golden.layout import GEOMETRY_FIELDS, Geometry
    k = len(GEOMETRY_FIELDS)
    words = struct.unpack_from(f"<{1 + k}I", payload)
    return words[0], Geometry(*words[1:])


def geometry_fits(cfg, pages: int, entry: int, g) -> bool:
    """The board's SET_GEOMETRY check (the RTL follows it): the registers ``g`` (a
    :class:`~proxima.golden.layout.Geometry`, host-computed) are within the hardware's
    register ranges (:func:`~proxima.golden.layout.geometry_bounds`), ``1 <= n <=
    max_vertices``, ``hot <= n``, ``entry < n``, ``code_copy_count <= n``, every count and
    size at least 1, and the last vertex's normal frame and raw vector (by the hardware's
    address rule) and the code-copy region lie below ``pages`` pages per core of the
    store.  The registers' consistency with one ``Layout`` is the host's part
    (``Layout.registers``)."""
    from proxima.golden.layout import (GEOMETRY_FIELDS, Layout, div_by_reciprocal,
                                       geometry_bounds)
    b = geometry_bounds(cfg)
    if any(not 0 <= getattr(g, f) <= getattr(b, f) for f in GEOMETRY_FIELDS):
        return False
    if not (1 <= g.n and g.hot <= g.n and entry < g.n and g.code_copy_count <= g.n):
        return False
    if min(g.hot_accesses, g.stride, g.frames_per_page, g.frame_accesses,
           g.code_accesses) < 1:
        return False
    j = (g.n - 1) // cfg.nand.cores
    frame_page = g.hot_pages + div_by_reciprocal(cfg, j, g.fpp_recip)
    raw = Layout(cfg, 1, 0, 0)
    raw_page = (g.n - 1) // cfg.nand.raw_vector_cores // raw.raw_per_page
    hot_page = 0 if g.hot == 0 else \
        (cfg.layout.hot_copies - 1) * g.hot_copy_pages + \
        (g.hot * g.hot_accesses - 1) // cfg.nand.cores // cfg.nand.accesses_per_page
    # the code-copy region's end (copies 1..X-1 of cp pages each from code_copy_page)
    copies_end = g.code_copy_page + (cfg.layout.hot_copies - 1) * g.code_copy_pages
    return frame_page < pages and raw_page < pages and hot_page < pages and copies_end <= pages


def store_pages(layout) -> int:
    """Pages per core the board's store holds for images of ``layout``: the most pages any
    index or raw-vector core of it uses, rounded up to a power of two (the NAND
    controller's ``pages``, :meth:`proxima.hdl.accel.Accelerator.store_pages`)."""
    used = max(1, layout.index_pages_per_core, layout.raw_pages_per_core)
    return 1 << (used - 1).bit_length()


def store_map(layout, beat_bytes: int, pages: int | None = None) -> tuple[list[int], int]:
    """Word base address of every core in the board's store and the store's size in words.

    The store is the NAND controller's (:mod:`proxima.golden.nandctl`, "Backing store"):
    the index cores, then the raw-vector cores, each ``pages`` (default
    :func:`store_pages` of ``layout``: the board's store is sized for its nominal image) pages of
    ``nand.page_bytes`` (``P``); byte ``a`` of core ``c`` is byte ``a % beat_bytes`` of word
    ``base[c] + a // beat_bytes`` (little-endian), ``base[c] = c * store_pages * P /
    beat_bytes``."""
    P = layout.cfg.nand.page_bytes
    if P % beat_bytes:
        raise ValueError(f"page size {P} is not a multiple of the store word ({beat_bytes} B)")
    core_words = (store_pages(layout) if pages is None else int(pages)) * P // beat_bytes
    cores = layout.cfg.nand.cores + layout.cfg.nand.raw_vector_cores
    return [c * core_words for c in range(cores)], cores * core_words


def config_hash(cfg) -> int:
    """32-bit hash of a configuration (CRC-32 of its JSON), reported by IDENTIFY."""
    import zlib
    return zlib.crc32(cfg.to_json().encode()) & 0xFFFFFFFF
