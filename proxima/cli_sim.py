"""``proxima sim``: queries through the whole engine's RTL (Verilator), checked against golden.

    proxima sim --index index.pxi --queries q.u8bin [--gt gt.ivecs] [--queues 4] [-n 100]
                [--engine harness|cocotb] [--wave out.fst] [--set search.L=32 ...]

Builds the :class:`proxima.hdl.accel.Accelerator` for the configuration (the image's
bytes are served on its NAND store port), runs it under Verilator
(:func:`proxima.sim.accel_run.simulate_accel`): by default in the C++ harness
``sim/harness`` (no Python in the simulation loop), with ``--engine cocotb`` (implied by
``--wave``) through the cocotb bench ``sim/tb/tb_accel.py``; checks every query's ids,
distances, counters and NAND access sequence against the golden model and prints
(:meth:`~proxima.sim.accel_run.AccelRun.report`) recall (with ``--gt``), cycles per query,
QPS at ``engine.clock_mhz``, NAND core utilisation and the simulation speed.  The
Verilator build is cached by configuration under ``build/sim-cache/`` (a second run with
the same configuration and queues starts at once, whatever the image's geometry and codebook:
both engines write them into the geometry registers and through ``cb_wr`` at run time).  Exit status 1 when any query
disagrees with the golden model.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    from .cli import _positive

    s = subparsers.add_parser("sim", help="run queries through the engine RTL (Verilator), "
                                          "checked against the golden model",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--index", required=True, help="index image (.pxi)")
    s.add_argument("--queries", required=True, help="query vectors")
    s.add_argument("--gt", help="ground truth (.ivecs) for recall")
    s.add_argument("--queues", type=_positive, default=None,
                   help="search contexts in flight (default: engine.queues of the image)")
    s.add_argument("-n", "--count", type=_positive, default=None,
                   help="simulate the first COUNT queries (default: all)")
    s.add_argument("--engine", choices=("harness", "cocotb"), default=None,
                   help="simulation engine: the C++ Verilator harness (default) or the cocotb "
                        "bench (about 30x slower; the default with --wave)")
    s.add_argument("--wave", default=None, metavar="OUT.fst",
                   help="write an FST waveform of the run (cocotb engine, a separate build "
                        "with tracing)")
    s.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SEC.KEY=V", help="search-time override, e.g. --set search.L=32")
    s.add_argument("--stall-seed", type=lambda v: int(v, 0), default=0,
                   help="random NAND response stalls from this LFSR seed (0: none)")
    s.add_argument("--fast-build", action="store_true",
                   help="compile the simulation model with less optimisation (harness: -O1, "
                        "cocotb: -O0; builds faster, simulates slower; a build of its own in "
                        "the cache)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_sim)
    return s


def _cmd_sim(args) -> int:
    from tqdm import tqdm

    from .golden.image import read_image
    from .golden.vecio import read_vectors
    from .pipeline import (PipelineError, check_ground_truth, check_output_path,
                           prepare_queries, search_config)
    from .sim.accel_run import FAST_BUILD, simulate_accel
    from .sim.harness import FAST_OPTIONS, HarnessFailure
    from .sim.runner import SimulatorError

    if args.wave is not None:
        if not args.wave.endswith(".fst"):
            raise PipelineError(f"--wave {args.wave}: the waveform is written as FST "
                                f"(name it *.fst)")
        check_output_path(args.wave, [args.index, args.queries], what="--wave")
    if args.wave is not None and args.engine == "harness":
        raise PipelineError("--wave needs --engine cocotb (the harness writes no waveform)")
    engine = args.engine or ("cocotb" if args.wave is not None else "harness")
    if not 0 <= args.stall_seed < 1 << 16:
        raise PipelineError(f"--stall-seed must be in 0..65535, got {args.stall_seed}")
    img = read_image(args.index)
    cfg = search_config(img.index.cfg, args.overrides)
    queues = args.queues or cfg.engine.queues
    cfg = search_config(cfg, [f"engine.queues={queues}"])
    q_all = prepare_queries(img.index, read_vectors(args.queries))
    gt = None
    if args.gt:
        gt = check_ground_truth(read_vectors(args.gt), len(q_all), img.index.n)
    n = len(q_all) if args.count is None else min(args.count, len(q_all))
    q = q_all[:n]
    gt = gt[:n] if gt is not None else None

    print(f"proxima sim: {n} queries, {queues} queues, preset {cfg.name}, "
          f"{img.index.n} vectors ({args.index}), engine {engine}", file=sys.stderr)
    bar = tqdm(total=n, desc="rtl", unit="q", disable=args.quiet, file=sys.stderr)

    def progress(done: int) -> None:
        bar.update(done - bar.n)

    try:
        run = simulate_accel(img, q, cfg=cfg, queues=queues, stall_seed=args.stall_seed,
                             wave=args.wave, progress=progress, engine=engine,
                             make_vars=FAST_BUILD if args.fast_build else None,
                             harness=FAST_OPTIONS if args.fast_build else None)
    except (SimulatorError, HarnessFailure) as e:  # a bench failure, not a mismatch
        raise PipelineError(str(e).splitlines()[0]) from None
    finally:
        bar.close()
    for line in run.report(gt=gt, labels=img.index.labels):
        print(line)
    if args.wave is not None:
        print(f"waveform: {args.wave}")
    return 1 if run.mismatches else 0


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - via proxima.cli
    from .cli import main as cli_main
    return cli_main(["sim", *(argv or sys.argv[1:])])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
