"""Replay real search traffic through the RTL blocks and compare with the golden model.

:func:`replay_transactions` takes an index image and some queries, runs the golden
Algorithm 1 with events on, and derives what each engine block sees while the engine runs
those searches:

``bloom``      per query a clear, then the entry id and every neighbour id of every expanded
               vertex in row order; the expected hit of each id comes from the *search trace*
               (a neighbour is a hit exactly when the search did not ask for its PQ code);
``pq``         per query the query vector (ADT build: every ADT word) and the PQ codes of the
               vertices whose codes the search needed (every PQ distance);
``exact``      per query the raw vectors the search reranked (every exact distance);
``sorter``     per expansion the keys of the new candidates, padded to ``engine.sorter_n``
               (in sub-batches of ``sorter_n`` when there are more, as the list sends them);
``gapdec``     the frame bytes, as stored in the image, of every expanded vertex (the hot
               frame for hot vertices); decoding them must give the neighbour list the search
               used;
``pagecache``  the byte addresses of every NAND access of the searches, in order.

:func:`replay_queries` writes these to JSON, builds each block's Verilog (the blocks of
:data:`proxima.hdl.registry.BLOCKS` marked ``replay``, built by its ``build_block``), runs
``proxima.sim.tb.tb_replay`` on it with no stalls, and returns per block the number of
transactions, mismatches and the cycles the RTL took.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from proxima.golden.distance import exact_distances, sort_key
from proxima.golden.index import Index
from proxima.golden.layout import Layout, decode_frame, decode_hot_frame, reads_for_events
from proxima.golden.pq import build_adt, pq_distances
from proxima.golden.search_batch import search_batch
from proxima.hdl.registry import replay_blocks

__all__ = ["BLOCKS", "replay_transactions", "replay_queries", "ReplayError"]

#: the replayed blocks: those of :data:`proxima.hdl.registry.BLOCKS` with ``replay=True``
BLOCKS = replay_blocks()


class ReplayError(RuntimeError):
    """The golden model disagrees with itself (image vs search): a bug, not an RTL issue."""


def _frame_bytes(img, v: int) -> tuple[bytes, bool]:
    """The frame the engine reads to expand ``v``: the hot frame for hot vertices."""
    lay: Layout = img.layout
    P = lay.cfg.nand.page_bytes
    if v < lay.hot:
        out = b""
        for a in range(lay.hot_accesses):
            core, page, off = lay.hot_chunk_address(v, a)
            base = page * P + off
            out += bytes(img.frames[core, base:base + lay.access])
        return out[:lay.hot_frame_bytes], True
    core, page, off = lay.frame_address(v)
    base = page * P + off
    return bytes(img.frames[core, base:base + lay.frame_bytes]), False


def replay_transactions(img, queries: np.ndarray) -> dict:
    """Per-block transactions and golden expectations (JSON-able) for ``queries``."""
    index: Index = img.index
    cfg = index.cfg
    idb = cfg.id_bits
    results = search_batch(index, queries, trace=True)
    out: dict = {b: {} for b in BLOCKS}

    bloom_ops, bloom_exp = [], []
    pq_q, pq_adt, pq_codes, pq_ids, pq_exp = [], [], [], [], []
    ex_q, ex_ids, ex_exp = [], [], []
    sort_in = []
    frames, hot_flags = [], []
    addrs: list[int] = []
    lay: Layout = img.layout
    core_bytes = max(lay.index_core_bytes, lay.raw_core_bytes)
    P = cfg.nand.page_bytes
    pad = (1 << cfg.sort_key_bits) - 1
    n_sort = cfg.engine.sorter_n

    for q, res in zip(queries, results):
        adt = build_adt(cfg, q, index.codebook)
        ev = res.events
        code_ids = [v for k, v in ev if k == "code"]
        raw_ids = [v for k, v in ev if k == "raw"]
        # Bloom: ids in the order the engine tests them; hits from the search trace
        bloom_ops.append(-1)
        bloom_ops.append(int(index.entry))
        bloom_exp.append([0, int(index.entry)])
        i = 0
        while i < len(ev):
            kind, u = ev[i]
            i += 1
            if kind != "frame":
                continue
            passed = []
            while i < len(ev) and ev[i][0] == "code":
                passed.append(ev[i][1])
                i += 1
            row = [int(x) for x in index.neighbor_list(u)]
            if passed != [v for v in row if v in set(passed)]:
                raise ReplayError(f"codes after frame {u} are not in row order")
            ps = set(passed)
            for v in row:
                bloom_ops.append(v)
                bloom_exp.append([int(v not in ps), v])
            # sorter: the new candidates' keys, padded; more than sorter_n of them go in
            # sub-batches of sorter_n, as the candidate list sends them
            keys = [sort_key(pq_distances(adt, index.codes[v]), v, idb) for v in passed]
            for s in range(0, len(keys), n_sort):
                part = keys[s:s + n_sort]
                sort_in.append(part + [pad] * (n_sort - len(part)))
            # gap decoder: the frame as stored, and it must decode to this row
            fb, hot = _frame_bytes(img, u)
            dec = (decode_hot_frame if hot else decode_frame)(lay, fb)[0]
            if [int(x) for x in dec if x >= 0] != row:
                raise ReplayError(f"frame of vertex {u} in the image does not decode to the "
                                  f"neighbour list the search used")
            frames.append(fb.hex())
            hot_flags.append(int(hot))
        pq_q.append([int(x) for x in q])
        pq_adt.append(adt.reshape(-1).tolist())
        pq_ids.append(code_ids)
        pq_codes.append(index.codes[code_ids].tolist() if code_ids else [])
        pq_exp.append(pq_distances(adt, index.codes[code_ids]).tolist() if code_ids else [])
        ex_q.append([int(x) for x in q])
        ex_ids.append(raw_ids)
        ex_exp.append(exact_distances(q, index.vectors[raw_ids]).tolist() if raw_ids else [])
        for rd in reads_for_events(ev, lay):
            addrs.append(rd.core * core_bytes + rd.page * P + rd.offset)

    out["bloom"] = {"ops": bloom_ops, "expect": bloom_exp}
    out["pq"] = {"codebook": index.codebook.tolist(), "queries": pq_q, "adt": pq_adt,
                 "ids": pq_ids, "codes": pq_codes, "expect": pq_exp}
    out["exact"] = {"queries": ex_q, "ids": ex_ids, "vectors": [
        index.vectors[i].tolist() for i in ex_ids], "expect": ex_exp}
    out["sorter"] = {"vectors": sort_in}
    out["gapdec"] = {"frames": frames, "hot": hot_flags,
                     "layout": [lay.n, lay.hot, lay.gap_width]}
    out["pagecache"] = {"addrs": addrs,
                        "addr_bits": int(max(addrs, default=0)).bit_length() + 1}
    out["_queries"] = len(queries)
    return out


def _options(data: dict) -> dict:
    """Per block, the constructor options the replayed traffic needs."""
    return {"pq": {"codebook": np.array(data["pq"]["codebook"], dtype=np.uint8)},
            "pagecache": {"addr_bits": data["pagecache"]["addr_bits"]}}


def replay_queries(img, queries: np.ndarray, simulator: str = "verilator",
                   workdir: str | Path = "out/replay", blocks=BLOCKS) -> dict:
    """Run the replay of ``queries`` through each block's RTL; see the module docstring."""
    from proxima.hdl.registry import build_block
    from proxima.sim.runner import CocotbFailure, run_cocotb

    cfg = img.index.cfg
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = replay_transactions(img, queries)
    data_path = work / "transactions.json"
    data_path.write_text(json.dumps(data))
    options = _options(data)
    report: dict = {"queries": len(queries), "blocks": {}}
    for name in blocks:
        res_path = work / f"result_{name}.json"
        res_path.unlink(missing_ok=True)
        error = None
        try:
            run_cocotb(lambda: build_block(name, cfg, **options.get(name, {})),
                       f"replay_{name}", "proxima.sim.tb.tb_replay", cfg=cfg,
                       simulator=simulator, build_name=f"replay_{name}_{cfg.name}",
                       testcase=f"replay_{name}",
                       parameters={"data": str(data_path), "result": str(res_path)})
        except CocotbFailure as e:
            error = str(e).splitlines()[0]
        if not res_path.exists():
            raise ReplayError(f"replay of {name} produced no result: {error}")
        r = json.loads(res_path.read_text())
        if error and not r.get("mismatches"):
            r["mismatches"] = max(1, r.get("mismatches", 0))
        r["error"] = error
        report["blocks"][name] = r
    return report
