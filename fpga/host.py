"""Host driver of a Proxima board (protocol: :mod:`proxima.golden.link`).

::

    from proxima.fpga.host import Board
    with Board("/dev/ttyUSB0") as b:          # or Board(transport) for any byte transport
        print(b.identify())
        b.load(read_image("index.pxi"))       # store (verified by CRC read-back),
                                              # codebook, geometry
        res = b.search(q)                     # one query -> {ids, dists, counters, ...}
        results = b.search_many(queries)      # streamed: several queries in flight

The transport is anything with ``write(bytes)`` and ``read(n) -> bytes`` (returning fewer
bytes on its timeout), as :class:`serial.Serial` has; a string opens one with
:func:`serial.serial_for_url` (so ``loop://`` and ``socket://`` URLs work too).  The
cocotb testbench (:mod:`proxima.sim.tb.tb_board`) passes a transport that talks to the
simulated UART, so this same code drives the simulation.

Errors: :class:`BoardError` (an error reply from the board, a missing or unexpected
reply, a configuration mismatch), each with a one-line message.
"""

from __future__ import annotations

import struct
import time

import numpy as np

from proxima.golden import link as L

__all__ = ["Board", "BoardError", "open_transport", "check_results", "DEFAULT_BAUD"]

DEFAULT_BAUD = 3_000_000


class BoardError(RuntimeError):
    """The board refused a command, did not answer, or does not match the image."""


def open_transport(port: str, baud: int = DEFAULT_BAUD, timeout: float = 1.0):
    """A pyserial port (device path or URL); a clear error when it cannot be opened."""
    try:
        import serial
    except ImportError:
        raise BoardError("pyserial is not installed: pip install pyserial") from None
    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=timeout)
    except (serial.SerialException, ValueError, OSError) as e:
        raise BoardError(f"cannot open serial port {port}: {e} (is the board plugged in? "
                         "ULX3S and iCEBreaker show up as /dev/ttyUSB* or /dev/ttyACM*)") from None


class Board:
    """One board behind a byte transport (see the module docstring).

    ``retries``: times a command is sent again when its reply does not come (a lost or
    corrupted frame on the line); commands are idempotent except SUBMIT, which is never
    retried."""

    def __init__(self, port, *, baud: int = DEFAULT_BAUD, timeout: float = 1.0,
                 retries: int = 2):
        self.t = open_transport(port, baud, timeout) if isinstance(port, str) else port
        self._own = isinstance(port, str)
        self.retries = int(retries)
        self.seq = 0
        self.parser = L.FrameParser()
        self.pending: list[L.Frame] = []
        self.info: dict | None = None

    def close(self):
        if self._own:
            self.t.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- frames -------------------------------------------------------------------------
    def send(self, ftype: int, payload: bytes = b"") -> int:
        """Send one command frame; returns its sequence number."""
        self.seq = (self.seq + 1) & 0xFF
        self.t.write(L.encode_frame(ftype, self.seq, payload))
        return self.seq

    def receive(self, seq: int) -> L.Frame:
        """The reply with sequence number ``seq`` (replies to other numbers are dropped,
        error replies to garbage kept out of the way); raises on timeout."""
        while True:
            for i, f in enumerate(self.pending):
                if f.seq == seq and not (f.type == L.T_ERROR and f.payload[:1] ==
                                         bytes([L.ERR_GARBAGE])):
                    del self.pending[i]
                    return f
            data = self.t.read(1)
            if data:
                data += self.t.read(getattr(self.t, "in_waiting", 0))
            if not data:
                raise BoardError(f"no reply to frame {seq} (board absent, wrong port or baud "
                                 "rate, or the bitstream is not loaded)")
            self.pending += self.parser.feed(data)
            self.pending = self.pending[-64:]

    def command(self, ftype: int, payload: bytes = b"", *, retry: bool = True) -> bytes:
        """Send a command, wait for its reply, return the reply payload; error replies
        raise :class:`BoardError`."""
        tries = 1 + (self.retries if retry else 0)
        for attempt in range(tries):
            seq = self.send(ftype, payload)
            try:
                f = self.receive(seq)
            except BoardError:
                if attempt + 1 == tries:
                    raise
                continue
            if f.type == L.T_ERROR:
                code = f.payload[0] if f.payload else 0
                name = L.ERROR_NAMES.get(code, f"code {code}")
                if code in (L.ERR_CRC, L.ERR_TIMEOUT) and attempt + 1 < tries:
                    continue
                raise BoardError(f"board refused command 0x{ftype:02x}: {name}")
            if f.type != L.reply_type(ftype):
                raise BoardError(f"unexpected reply type 0x{f.type:02x} to command 0x{ftype:02x}")
            return f.payload
        raise BoardError("unreachable")

    # ---- commands -------------------------------------------------------------------------
    def identify(self) -> dict:
        p = self.command(L.T_IDENTIFY)
        out, off = {}, 0
        for name, w in L.IDENT_FIELDS:
            out[name] = int.from_bytes(p[off:off + w], "little")
            off += w
        if out["magic"] != L.MAGIC:
            raise BoardError("the device answered but is not a Proxima board")
        if out["version"] != L.PROTOCOL_VERSION:
            raise BoardError(f"board speaks protocol {out['version']}, this host "
                             f"{L.PROTOCOL_VERSION}")
        self.info = out
        return out

    def counters(self) -> dict:
        p = self.command(L.T_READ_COUNTERS)
        vals = struct.unpack(f"<{len(L.LINK_COUNTERS)}I", p)
        out = dict(zip(L.LINK_COUNTERS, vals))
        st = out.pop("status")
        out.update(busy=bool(st & 1), engine_error=bool(st & 2), engine_busy=bool(st & 4))
        return out

    def soft_reset(self):
        self.command(L.T_SOFT_RESET)

    def write_store(self, addr: int, data: bytes) -> None:
        """Write whole words at word address ``addr``; the reply's CRC of the words read
        back from the store must equal the CRC of ``data``."""
        crc = struct.unpack("<H", self.command(L.T_WRITE_STORE,
                                               struct.pack("<I", addr) + bytes(data)))[0]
        if crc != L.crc16(bytes(data)):
            raise BoardError(f"store read-back CRC mismatch at word {addr}")

    def read_store(self, addr: int, words: int) -> bytes:
        return self.command(L.T_READ_STORE, struct.pack("<II", addr, words))

    def set_geometry(self, layout, entry: int, entry_code: bytes = b""):
        """The geometry registers of an image of ``layout``
        (:meth:`~proxima.golden.layout.Layout.registers`), its entry vertex and the entry's
        PQ code (zeros if shorter): :func:`proxima.golden.link.geometry_payload`."""
        self.command(L.T_SET_GEOMETRY, L.geometry_payload(layout, entry, entry_code))

    def write_codebook(self, codebook: np.ndarray):
        """The PQ codebook ``(M, ksub, dsub)`` (entry ``m * ksub + c``)."""
        flat = np.ascontiguousarray(codebook, dtype=np.uint8).reshape(-1, codebook.shape[-1])
        per = (L.MAX_PAYLOAD - 2) // flat.shape[1]
        for a in range(0, len(flat), per):
            self.command(L.T_WRITE_CODEBOOK, struct.pack("<H", a) + flat[a:a + per].tobytes())

    # ---- image ------------------------------------------------------------------------------
    def check_image(self, img) -> None:
        """Raise unless the board's bitstream can serve ``img`` (configuration and geometry)."""
        info = self.info or self.identify()
        cfg, lay = img.layout.cfg, img.layout
        if info["config_hash"] != L.config_hash(cfg):
            raise BoardError("the image was built with another configuration than the "
                             "bitstream (rebuild with the image's preset and --set options)")
        if lay.hot_copies != info["hot_copies"]:  # (in the configuration: not reached)
            raise BoardError(f"the bitstream serves images with {info['hot_copies']} hot "
                             f"copies, this image has {lay.hot_copies}")
        need = max(lay.index_pages_per_core, lay.raw_pages_per_core)
        if need > info["store_pages"] or not L.geometry_fits(
                cfg, info["store_pages"], int(img.index.entry), lay.registers()):
            raise BoardError(
                f"the image needs {need} pages per core, the bitstream's store holds "
                f"{info['store_pages']} (rebuild with --index IMAGE)")

    def store_words_of(self, img) -> list[tuple[int, bytes]]:
        """(word address, bytes) of every core of ``img`` in the board's store."""
        info = self.info or self.identify()
        bb = info["beat_bytes"]
        base, total = L.store_map(img.layout, bb, pages=info["store_pages"])
        if total != info["store_words"]:
            raise BoardError(f"store size mismatch: board {info['store_words']} words, "
                             f"host computes {total}")
        cores = [bytes(img.frames[c]) for c in range(img.frames.shape[0])]
        cores += [bytes(img.raw[c]) for c in range(img.raw.shape[0])]
        return [(base[c], data + bytes(-len(data) % bb)) for c, data in enumerate(cores)]

    def clear_store(self):
        """Zero the whole store (on the board, one word per cycle)."""
        self.command(L.T_CLEAR_STORE)

    def load(self, img, *, progress=None) -> int:
        """Write ``img`` (a :class:`proxima.golden.image.Image`) into the store: clear it,
        then write the chunks that are not all zeros (each verified by the board's CRC
        read-back), then the codebook and the geometry registers.  Returns the bytes
        written over the link."""
        self.check_image(img)
        bb = self.info["beat_bytes"]
        chunk = (L.MAX_PAYLOAD - 4) // bb * bb
        total = 0
        self.clear_store()
        for addr, data in self.store_words_of(img):
            for off in range(0, len(data), chunk):
                part = data[off:off + chunk]
                if not any(part):
                    continue
                self.write_store(addr + off // bb, part)
                total += len(part)
                if progress:
                    progress(len(part))
        self.write_codebook(img.index.codebook)
        lay = img.layout
        e = int(img.index.entry)
        self.set_geometry(lay, e, bytes(img.index.codes[e]))
        return total

    def verify_store(self, img) -> None:
        """Read the whole image back from the store and compare (slow: a full transfer)."""
        bb = self.info["beat_bytes"]
        chunk = L.MAX_PAYLOAD // bb
        for addr, data in self.store_words_of(img):
            for off in range(0, len(data) // bb, chunk):
                n = min(chunk, len(data) // bb - off)
                got = self.read_store(addr + off, n)
                if got != data[off * bb:(off + n) * bb]:
                    raise BoardError(f"store differs from the image at word {addr + off}")

    # ---- queries ----------------------------------------------------------------------------
    def submit(self, query, tag: int) -> None:
        q = np.asarray(query, dtype=np.uint8).tobytes()
        self.command(L.T_SUBMIT, struct.pack("<H", tag & 0xFFFF) + q, retry=False)

    def read_result(self) -> dict | None:
        p = self.command(L.T_READ_RESULT)
        if not p:
            return None
        return L.decode_result(p, self.info["k"] if self.info else self.identify()["k"])

    def search(self, query, *, poll_s: float = 0.0) -> dict:
        return self.search_many([query], poll_s=poll_s)[0]

    def search_many(self, queries, *, in_flight: int | None = None,
                    poll_s: float = 0.0, max_polls: int = 1_000_000,
                    on_result=None) -> list[dict]:
        """Stream ``queries``: up to ``in_flight`` (default: the board's query slots plus its
        search contexts) are on the board at a time while results are read back as they
        finish (in any order, matched by their tags); returns the results in query order.
        ``on_result``: called with each result as it arrives."""
        info = self.info or self.identify()
        slots = in_flight or info["query_slots"] + info["queues"]
        results: dict[int, dict] = {}
        tag_of: dict[int, int] = {}
        nxt, polls = 0, 0
        n = len(queries)
        while len(results) < n:
            while nxt < n and nxt - len(results) < slots:
                tag_of[nxt & 0xFFFF] = nxt
                self.submit(queries[nxt], nxt & 0xFFFF)
                nxt += 1
            r = self.read_result()
            if r is None:
                polls += 1
                if polls > max_polls:
                    raise BoardError(f"no result after {max_polls} polls "
                                     f"({len(results)} of {n} done)")
                if poll_s:
                    time.sleep(poll_s)
                continue
            polls = 0
            if r["error"]:
                raise BoardError(f"the engine flagged an error on query {r['tag']} "
                                 "(corrupt store?)")
            if r["tag"] not in tag_of:
                raise BoardError(f"result with unknown tag {r['tag']}")
            results[tag_of.pop(r["tag"])] = r
            if on_result:
                on_result(r)
        return [results[i] for i in range(n)]


def check_results(img, queries, results) -> list[str]:
    """Compare board results with :func:`proxima.golden.search.search` on ``img``: ids,
    exact distances, every counter but ``cycles``, the stop reason, and the NAND accesses
    by kind (:func:`proxima.golden.layout.reads_for_events` of the query's events, hot
    frames from copy ``context % hot_copies``).  Returns one line per mismatching query
    (empty: all equal)."""
    from proxima.golden.layout import EVENT_KINDS, reads_for_events
    from proxima.golden.search import search
    bad = []
    lay = img.layout
    cfg = lay.cfg
    for i, (q, r) in enumerate(zip(queries, results)):
        ref = search(img.index, np.asarray(q, dtype=np.uint8), cfg)
        diffs = []
        if r["ids"] != [int(x) for x in ref.ids]:
            diffs.append(f"ids {r['ids']} != {ref.ids.tolist()}")
        if r["dists"] != [int(x) for x in ref.dists]:
            diffs.append(f"dists {r['dists']} != {ref.dists.tolist()}")
        for name in L.ENGINE_COUNTERS:
            if name != "cycles" and r["counters"][name] != int(ref.counters[name]):
                diffs.append(f"{name} {r['counters'][name]} != {ref.counters[name]}")
        if r["converged"] != (ref.reason == "converged"):
            diffs.append(f"reason {'converged' if r['converged'] else 'list_end'} != {ref.reason}")
        if "reads" in r:
            reads = reads_for_events(ref.events, lay, r["context"] % lay.hot_copies)
            for kind, name in zip(EVENT_KINDS, L.READ_KIND_COUNTERS):
                want = sum(x.kind == kind for x in reads)
                if r["reads"][name] != want:
                    diffs.append(f"{name} {r['reads'][name]} != {want}")
        if diffs:
            bad.append(f"query {i}: " + "; ".join(diffs))
    return bad
