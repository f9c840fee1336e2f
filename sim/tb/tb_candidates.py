"""cocotb testbench of :class:`proxima.hdl.candidates.CandidateListWithSorter` (the candidate
list wired to a real :class:`proxima.hdl.sorter.BitonicSorter`) against the golden
:class:`proxima.golden.candidates.CandidateList`.

A random command sequence (resets, insert batches of 1..R keys with ids unique since the
last reset -- as the visited filter guarantees --, selects with random ``T``) is replayed on
the golden twin; after *every* command a DUMP compares the whole list (all ``L`` slots,
keys and flags) and every SELECT response is compared.  The generator is shared with the
Amaranth-simulator tests (``tests/hdl/test_candidates.py``).

Parameters (``PROXIMA_TB_PARAMS``): ``commands`` (>= 10k for sign-off), ``p_valid`` /
``p_ready`` (per-cycle probabilities of offering a command beat / accepting an output
beat), ``dist_max`` (distances drawn from ``0..dist_max-1``: small values make distance
ties common, decided by the id), field offsets ``off_key``, ``off_T``, ``off_last`` of the
command payload, ``t_max`` and ``p_dump`` (probability of a DUMP after a command, 1 by
default; there is always one after the last command: fewer dumps make long runs shorter,
every dump is still compared slot by slot).
"""

from __future__ import annotations

import numpy as np

from proxima.golden.candidates import CandidateList
from proxima.golden.distance import sort_key
from proxima.golden.sorter import pad_key

OPS = {"reset": 0, "insert": 1, "select": 2, "dump": 3}


def make_commands(cfg, rng: np.random.Generator, count: int, dist_max: int = 64,
                  t_max: int | None = None, p_reset: float = 0.03,
                  p_insert: float = 0.45) -> list[tuple]:
    """``count`` random commands: ``("reset", key)``, ``("insert", [keys])``,
    ``("select", T)``; the first is a reset."""
    idb = cfg.id_bits
    R, L = cfg.graph.R, cfg.search.L
    t_max = L + 2 if t_max is None else t_max
    dist_hi = min(dist_max, 1 << cfg.pq_dist_bits)
    pad = pad_key(cfg)
    used: set[int] = set()

    def fresh_key() -> int:
        while True:
            v = int(rng.integers(0, 1 << idb))
            if rng.random() < 0.05:
                v = (1 << idb) - 1 - int(rng.integers(0, 4))  # ids at the top of the range
            d = int(rng.integers(0, dist_hi))
            if rng.random() < 0.02:
                d = (1 << cfg.pq_dist_bits) - 1
            key = sort_key(d, v, idb)
            if v not in used and key != pad:
                used.add(v)
                return key

    out: list[tuple] = []
    for t in range(count):
        u = rng.random()
        if t == 0 or u < p_reset:
            used.clear()
            out.append(("reset", fresh_key()))
        elif u < p_reset + p_insert:
            out.append(("insert", [fresh_key() for _ in range(int(rng.integers(1, R + 1)))]))
        else:
            hi = t_max if rng.random() < 0.7 else min(t_max, 3)  # small T: often none left
            out.append(("select", int(rng.integers(0, hi + 1))))
    return out


def expected(cfg, commands) -> tuple[list[tuple[int, int, int, int]], list[list[tuple]]]:
    """Golden responses ``(found, pos, id, key)`` of the selects and the list after every
    command (``L`` slots of ``(pos, key, expanded, last)``)."""
    c = CandidateList(cfg)
    mask = (1 << cfg.id_bits) - 1
    resps, dumps = [], []
    L = cfg.search.L
    for op, arg in commands:
        if op == "reset":
            c.reset(arg)
        elif op == "insert":
            c.insert(arg)
        else:
            f, pos, key = c.select(arg)
            resps.append((int(f), pos, key & mask, key))
        dumps.append([(i, k, int(e), int(i == L - 1)) for i, (k, e) in enumerate(c.padded())])
    return resps, dumps


def command_beats(commands, dump_after=True) -> list[tuple[int, int, int, int]]:
    """Command stream beats ``(op, key, T, last)``; a DUMP after every command
    (``dump_after = True``), none (``False``) or after command ``k`` when ``dump_after[k]``
    (a sequence of booleans)."""
    beats = []
    if isinstance(dump_after, bool):
        dump_after = [dump_after] * len(commands)
    for (op, arg), dump in zip(commands, dump_after, strict=True):
        if op == "reset":
            beats.append((OPS["reset"], arg, 0, 0))
        elif op == "insert":
            beats += [(OPS["insert"], k, 0, int(t == len(arg) - 1)) for t, k in enumerate(arg)]
        else:
            beats.append((OPS["select"], 0, arg, 0))
        if dump:
            beats.append((OPS["dump"], 0, 0, 0))
    return beats


# ---------------------------------------------------------------------------------------
# cocotb
# ---------------------------------------------------------------------------------------
try:
    import cocotb

    from proxima.sim.tb import bench
except ImportError:  # pragma: no cover
    cocotb = None


if cocotb is not None:
    @cocotb.test()
    async def random_commands_with_stalls(dut):
        """>= 10k random commands, the whole list compared after each one, random stalls."""
        cfg, p, rnd, rng = bench.setup()
        L, KB, idb = cfg.search.L, cfg.sort_key_bits, cfg.id_bits
        pos_bits = max(1, (L - 1).bit_length())
        count = int(p.get("commands", 10_000))
        off_key, off_T, off_last = int(p["off_key"]), int(p["off_T"]), int(p["off_last"])
        commands = make_commands(cfg, rng, count, int(p.get("dist_max", 64)),
                                 int(p.get("t_max", L + 2)))
        exp_resp, exp_dumps = expected(cfg, commands)
        p_dump = float(p.get("p_dump", 1.0))
        dump_sel = [rnd.random() < p_dump or k == count - 1 for k in range(count)]
        dumped = [k for k in range(count) if dump_sel[k]]
        exp_dbg = [b for k in dumped for b in exp_dumps[k]]
        beats = [op | (key << off_key) | (T << off_T) | (last << off_last)
                 for op, key, T, last in command_beats(commands, dump_sel)]
        await bench.reset(dut, inputs=["cmd"], outputs=["resp", "dbg"])
        p_valid, p_ready = float(p.get("p_valid", 0.8)), float(p.get("p_ready", 0.8))
        kmask, pmask = (1 << KB) - 1, (1 << pos_bits) - 1

        def resp_beat(v):  # found(1) pos id key
            return (v & 1, (v >> 1) & pmask, (v >> (1 + pos_bits)) & ((1 << idb) - 1),
                    (v >> (1 + pos_bits + idb)) & kmask)

        def dbg_beat(v):  # pos key expanded last
            return (v & pmask, (v >> pos_bits) & kmask, (v >> (pos_bits + KB)) & 1,
                    (v >> (pos_bits + KB + 1)) & 1)

        def explain_dbg(k, got, exp):
            cmd_no = dumped[min(k // L, len(dumped) - 1)]
            return (f"after command {cmd_no} {commands[cmd_no] if cmd_no < len(commands) else ''}"
                    f": slot {k % L} got {got}, expected {exp}")

        resps = bench.Scoreboard(exp_resp, "select response")
        dumps = bench.Scoreboard(exp_dbg, explain=explain_dbg)
        agents = [bench.Source(dut, "cmd", beats, p_valid),
                  bench.Sink(dut, "resp", p_ready, check=resps, unpack=resp_beat, keep=False),
                  bench.Sink(dut, "dbg", p_ready, check=dumps, unpack=dbg_beat, keep=False)]
        cycle = await bench.run(dut, agents, rnd,
                                max_cycles=200 * len(beats) + 10 * len(exp_dbg))
        ops = [c[0] for c in commands]
        dut._log.info("candidate list: %d commands (%d resets, %d inserts, %d selects, %d "
                      "found), %d dumps, %d dump beats, %d cycles", len(commands),
                      ops.count("reset"),
                      ops.count("insert"), ops.count("select"),
                      sum(r[0] for r in exp_resp), len(dumped), dumps.count, cycle)
