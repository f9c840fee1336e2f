"""``proxima fpga ...``: bitstreams, programming and queries on a board.

``proxima fpga build --board ulx3s-85f|icebreaker [--preset P] [--set S.K=V ...]
[--index IMG] [--vertices N] [--queues Q] [--clock MHZ] [--baud B] [--seed S] [--router R]
[--placer-density D] [--link-only] [--out DIR] [--json F]``
    build the bitstream (:func:`proxima.fpga.boards.build`) and print the report (LUT, FF,
    BRAM, DSP, Fmax against the requested clock; JSON in ``DIR/report.json`` and ``--json``).
    Exit status 1 when the requested clock is not met.
``proxima fpga program --board B [--bitstream F]``
    load the bitstream into the board's FPGA (SRAM) with openFPGALoader (ULX3S; Debian
    package ``openfpgaloader``) or iceprog / openFPGALoader (iCEBreaker).
``proxima fpga query --port /dev/ttyUSB0 --index IMG --queries Q [--check] [--no-load]``
    load the image into the board's store (CRC read-back of every chunk), stream the
    queries, print ids (the caller's labels), distances, counters and QPS; ``--check``
    compares every result with the golden model (exit 1 on a difference).

User errors print one line and exit with status 2.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["add_parser", "main"]

BUILD_ROOT = Path("build") / "fpga"


class _UserError(Exception):
    pass


def add_parser(subparsers):
    from proxima.config import PRESETS
    from proxima.fpga.boards import BOARDS, ROUTERS

    f = subparsers.add_parser("fpga", help="FPGA boards: build, program, query",
                              description="Bitstreams, programming and a host link to a board.")
    sub = f.add_subparsers(dest="fpga_command", metavar="COMMAND")
    sub.required = True

    b = sub.add_parser("build", help="build a bitstream and report resources and Fmax")
    b.add_argument("--board", required=True, choices=sorted(BOARDS))
    b.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="configuration preset (default: default on ulx3s-85f; tiny with "
                        "512-byte pages on icebreaker)")
    b.add_argument("--set", dest="overrides", action="append", default=[], metavar="SEC.KEY=V")
    b.add_argument("--index", help="build for this image's geometry and configuration")
    b.add_argument("--vertices", type=int, help="nominal image size (default: the most that fit)")
    b.add_argument("--queues", type=int,
                   help="search contexts of the Accelerator (default: the most that fit "
                        "the ULX3S-85F, 2)")
    b.add_argument("--clock", type=float, help="engine clock in MHz (default engine.clock_mhz)")
    b.add_argument("--baud", type=int, help="UART baud rate (default: 3 Mbaud ULX3S, 1 Mbaud "
                                             "iCEBreaker)")
    b.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    b.add_argument("--router", choices=sorted(ROUTERS), default=None,
                   help="nextpnr router (default router1; router2 for the congested engine "
                        "builds)")
    b.add_argument("--placer-density", type=float, default=None, metavar="D",
                   help="nextpnr's analytic placer's maximum cell density (0 < D <= 1, "
                        "its --placer-heap-beta; default the tool's 0.9): lower spreads the "
                        "design for the router")
    b.add_argument("--link-only", action="store_true",
                   help="the link and the store without the engine (always on icebreaker)")
    b.add_argument("--out", help="build directory (default build/fpga/BOARD)")
    b.add_argument("--json", help="also write the report here")
    b.set_defaults(func=_cmd_build)

    p = sub.add_parser("program", help="load a bitstream into the board")
    p.add_argument("--board", required=True, choices=sorted(BOARDS))
    p.add_argument("--bitstream", help="default: the last build's (build/fpga/BOARD)")
    p.set_defaults(func=_cmd_program)

    q = sub.add_parser("query", help="load an image and run queries on a board")
    q.add_argument("--port", required=True, help="serial port or pyserial URL")
    q.add_argument("--index", required=True, help="index image (proxima build-index)")
    q.add_argument("--queries", required=True, help="query vectors (fvecs/bvecs/npy/...)")
    q.add_argument("--baud", type=int, default=None, help="default: 3 Mbaud")
    q.add_argument("--timeout", type=float, default=1.0, help="reply timeout in seconds")
    q.add_argument("--check", action="store_true", help="compare with the golden model")
    q.add_argument("--no-load", action="store_true", help="the store already holds the image")
    q.add_argument("--show", type=int, default=10, help="results to print")
    q.add_argument("--json", help="write results as JSON here")
    q.set_defaults(func=_cmd_query)
    return f




def _cfg(args, board):
    from proxima.config import preset
    name = args.preset or ("tiny" if board == "icebreaker" else "default")
    cfg = preset(name)
    sets = list(args.overrides)
    if board == "icebreaker" and args.preset is None and not sets:
        sets = ["nand.page_bytes=512"]  # a store that fits the UP5K's block RAM
    return cfg.override(sets) if sets else cfg


def _cmd_build(args) -> int:
    from proxima.config import ConfigError
    from proxima.fpga.boards import BuildError, build, format_report
    try:
        cfg = _cfg(args, args.board)
        out = Path(args.out) if args.out else BUILD_ROOT / args.board
        r = build(args.board, cfg, out_dir=out, index_path=args.index, n=args.vertices,
                  clock_mhz=args.clock, baud=args.baud, seed=args.seed,
                  link_only=args.link_only, queues=args.queues, router=args.router,
                  placer_density=args.placer_density)
    except (BuildError, ConfigError, ValueError) as e:
        raise _UserError(str(e)) from None
    print(format_report(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    if not r["timing_met"]:
        print(f"proxima fpga build: timing violation: Fmax {r['fmax_mhz']} MHz < "
              f"{r['clock_mhz']:.2f} MHz requested", file=sys.stderr)
        return 1
    return 0


def program_command(board: str, bitstream: Path) -> list[str]:
    """The programming command line for ``board`` (raises when no tool is installed)."""
    if board == "ulx3s-85f":
        tool = shutil.which("openFPGALoader")
        if tool is None:
            raise _UserError("openFPGALoader not found: install it (Debian/Ubuntu: "
                             "`sudo apt-get install openfpgaloader`)")
        return [tool, "-b", "ulx3s", str(bitstream)]
    tool = shutil.which("iceprog")
    if tool:
        return [tool, str(bitstream)]
    tool = shutil.which("openFPGALoader")
    if tool:
        return [tool, "-b", "ice40_generic", str(bitstream)]  # the iCEBreaker: FT2232H, flash
    raise _UserError("neither iceprog nor openFPGALoader found: install one (Debian/Ubuntu: "
                     "`sudo apt-get install openfpgaloader` or `fpga-icestorm`)")


def _cmd_program(args) -> int:
    default = BUILD_ROOT / args.board / ("top.bit" if args.board == "ulx3s-85f" else "top.bin")
    bit = Path(args.bitstream) if args.bitstream else default
    if not bit.is_file():
        raise _UserError(f"bitstream {bit} not found: run `proxima fpga build --board "
                         f"{args.board}` first or pass --bitstream")
    cmd = program_command(args.board, bit)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    text = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        low = text.lower()
        if "not found" in low or "unable to open" in low or "no device" in low or \
                "can't find" in low:
            raise _UserError(f"no {args.board} board found by {Path(cmd[0]).name} (is it "
                             f"plugged in, and may this user access USB devices?)")
        last = text.splitlines()[-1] if text else f"exit {proc.returncode}"
        raise _UserError(f"{Path(cmd[0]).name} failed: {last}")
    print(f"programmed {args.board} with {bit}")
    return 0


def _read_queries(index, path):
    import numpy as np

    from proxima.golden.vecio import read_vectors
    q = np.asarray(read_vectors(path))
    if np.issubdtype(q.dtype, np.floating):
        if index.quantiser is None:
            raise _UserError("float queries but the index was built from integer vectors")
        from proxima.golden.quant import Quantiser
        lo, scale = index.quantiser
        return Quantiser(lo, scale, index.cfg.vec.elem_bits).quantise(q)
    from proxima.golden.build import prepare_vectors
    return prepare_vectors(index.cfg, q)[0]


def _cmd_query(args) -> int:
    from proxima.fpga.host import DEFAULT_BAUD, Board, BoardError, check_results
    from proxima.golden.image import ImageError, read_image
    try:
        img = read_image(args.index)
    except (ImageError, OSError) as e:
        raise _UserError(f"cannot read index image {args.index}: {e}") from None
    try:
        queries = _read_queries(img.index, args.queries)
    except (OSError, ValueError) as e:
        raise _UserError(f"cannot read queries {args.queries}: {e}") from None
    if queries.shape[1] != img.layout.cfg.vec.dim:
        raise _UserError(f"queries have dimension {queries.shape[1]}, the index "
                         f"{img.layout.cfg.vec.dim}")
    try:
        with Board(args.port, baud=args.baud or DEFAULT_BAUD, timeout=args.timeout) as b:
            info = b.identify()
            print(f"board: store {info['store_words'] * info['beat_bytes']:,} B, images up to "
                  f"{info['n_max']} vertices, {info['queues']} search contexts, "
                  f"{info['clock_hz'] / 1e6:g} MHz, {info['baud']:,} baud")
            if not args.no_load:
                t0 = time.perf_counter()
                nbytes = b.load(img)
                print(f"loaded {nbytes:,} B in {time.perf_counter() - t0:.1f} s "
                      "(every chunk verified by CRC read-back)")
            t0 = time.perf_counter()
            res = b.search_many(list(queries))
            dt = time.perf_counter() - t0
            ctr = b.counters()
    except BoardError as e:
        raise _UserError(str(e)) from None
    labels = img.index.labels
    for i, r in enumerate(res[:args.show]):
        print(f"query {i}: ids {labels[r['ids']].tolist()} dists {r['dists']} "
              f"({'converged' if r['converged'] else 'list_end'}, hops {r['counters']['hops']}, "
              f"{r['counters']['cycles']} cycles)")
    cyc = [r["counters"]["cycles"] for r in res]
    per_ctx = info["clock_hz"] / (sum(cyc) / len(cyc))
    print(f"{len(res)} queries in {dt:.2f} s: {len(res) / dt:.1f} QPS over the link; engine "
          f"{sum(cyc) / len(cyc):.0f} cycles per query in a context "
          f"({per_ctx:.0f} QPS per context at the engine clock, {info['queues']} contexts)")
    print("link counters: " + ", ".join(f"{k} {v}" for k, v in ctr.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{**r, "labels": labels[r["ids"]].tolist()} for r in res], indent=1))
    if args.check:
        bad = check_results(img, queries, res)
        for line in bad[:20]:
            print("MISMATCH " + line)
        print(f"check: {len(res) - len(bad)} of {len(res)} results equal to the golden model")
        return 1 if bad else 0
    return 0


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="proxima")
    add_parser(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(argv)
    return args.func(args)


def _wrap(func):
    def run(args):
        try:
            return func(args)
        except _UserError as e:
            print(f"proxima fpga {args.fpga_command}: error: {e}", file=sys.stderr)
            return 2
    return run


_cmd_build, _cmd_program, _cmd_query = _wrap(_cmd_build), _wrap(_cmd_program), _wrap(_cmd_query)

if __name__ == "__main__":
    sys.exit(main())
