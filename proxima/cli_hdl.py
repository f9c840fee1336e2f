"""``proxima hdl ...`` sub-commands.

``proxima hdl verilog <block> --preset NAME [--set section.key=val ...] -o FILE``
    write the Verilog of a registered block (:data:`proxima.hdl.registry.BLOCKS`);
``proxima hdl list``
    list the registered blocks.

:func:`register` adds the ``hdl`` parser to the main CLI's sub-parsers; every leaf parser
sets ``func`` (called with the parsed arguments, returns the exit code).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register", "cmd_verilog", "cmd_list", "main"]


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``hdl`` (with ``verilog`` and ``list``) to an ``add_subparsers()`` object."""
    from proxima.hdl.registry import block_names

    hdl = subparsers.add_parser("hdl", help="RTL blocks: Verilog generation",
                                description="RTL blocks of the engine.")
    sub = hdl.add_subparsers(dest="hdl_command", metavar="COMMAND")
    sub.required = True

    v = sub.add_parser("verilog", help="write the Verilog of one block",
                       description="Elaborate a registered block under a configuration "
                                   "and write it as Verilog.")
    v.add_argument("block", help=f"one of: {', '.join(block_names())}")
    v.add_argument("--preset", default="default", help="configuration preset (default: default)")
    v.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="override a configuration field")
    v.add_argument("-o", "--output", type=Path, required=True, help="Verilog file to write")
    v.add_argument("--name", default=None, help="Verilog module name (default proxima_<block>)")
    v.set_defaults(func=cmd_verilog)

    ls = sub.add_parser("list", help="list the registered blocks")
    ls.set_defaults(func=cmd_list)
    return hdl


def cmd_verilog(args) -> int:
    from amaranth.back import verilog

    from proxima.config import ConfigError, preset
    from proxima.hdl.registry import UnknownBlockError, block_names, build_block

    if args.block == "engine":
        print("proxima hdl verilog: error: the engine top (Algorithm 1 control of the search "
              "queues around the shared blocks) is not built yet; write one block at a time: "
              + ", ".join(block_names()), file=sys.stderr)
        return 2
    try:
        cfg = preset(args.preset).override(args.overrides)
        block = build_block(args.block, cfg)
    except (ConfigError, UnknownBlockError, ValueError) as e:
        print(f"proxima hdl verilog: error: {e}", file=sys.stderr)
        return 2
    name = args.name or f"proxima_{args.block}"
    text = verilog.convert(block, name=name, emit_src=False)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output} (module {name}, block {args.block}, preset {cfg.name})",
          file=sys.stderr)
    return 0


def cmd_list(args) -> int:
    from proxima.hdl.registry import block_names
    for n in block_names():
        print(n)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m proxima.cli_hdl hdl verilog ...``)."""
    ap = argparse.ArgumentParser(prog="proxima")
    register(ap.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
