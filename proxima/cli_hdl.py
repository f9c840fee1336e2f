"""``proxima hdl ...`` sub-commands.

``proxima hdl verilog <block> --preset NAME [--set section.key=val ...] -o FILE``
    write the Verilog of a registered block (:data:`proxima.hdl.registry.BLOCKS`);
``proxima hdl verilog engine [--index IMAGE | --preset NAME ...] -o FILE``
    write the Verilog of the search engine top (:class:`proxima.hdl.engine.SearchEngine`):
    for the geometry and PQ codebook of an image file (``--index``; its configuration is the
    image's), or for a nominal geometry of the preset (``SearchEngine.from_config``, codebook
    loaded at run time through ``cb_wr``);
``proxima hdl list``
    list the registered blocks.

:func:`add_parser` adds the ``hdl`` parser to the main CLI's sub-parsers; every leaf parser
sets ``func`` (called with the parsed arguments, returns the exit code).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "cmd_verilog", "cmd_list", "main"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``hdl`` (with ``verilog`` and ``list``) to an ``add_subparsers()`` object."""
    from proxima.hdl.registry import block_names

    hdl = subparsers.add_parser("hdl", help="RTL blocks: Verilog generation",
                                description="RTL blocks of the engine.")
    sub = hdl.add_subparsers(dest="hdl_command", metavar="COMMAND")
    sub.required = True

    v = sub.add_parser("verilog", help="write the Verilog of one block",
                       description="Elaborate a registered block under a configuration "
                                   "and write it as Verilog.")
    v.add_argument("block", help=f"engine, or one of: {', '.join(block_names())}")
    v.add_argument("--preset", default="default", help="configuration preset (default: default)")
    v.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="override a configuration field")
    v.add_argument("-o", "--output", type=Path, required=True, help="Verilog file to write")
    v.add_argument("--name", default=None, help="Verilog module name (default proxima_<block>)")
    v.add_argument("--index", type=Path, default=None,
                   help="engine only: elaborate for this image file's geometry, configuration "
                        "and PQ codebook")
    v.set_defaults(func=cmd_verilog)

    ls = sub.add_parser("list", help="list the registered blocks")
    ls.set_defaults(func=cmd_list)
    return hdl




def cmd_verilog(args) -> int:
    from amaranth.back import verilog

    from proxima.config import ConfigError, preset
    from proxima.hdl.registry import UnknownBlockError, build_block

    if args.index is not None and args.block != "engine":
        print("proxima hdl verilog: error: --index applies to the engine only",
              file=sys.stderr)
        return 2
    try:
        if args.block == "engine":
            cfg, block = _engine(args)
        else:
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


def _engine(args):
    """(cfg, SearchEngine) for ``hdl verilog engine``; errors are ValueErrors (ConfigError,
    ImageError, EngineError are)."""
    from proxima.config import preset
    from proxima.golden.image import read_image
    from proxima.hdl.engine import SearchEngine
    from proxima.hdl.registry import build_block

    if args.index is None:  # the registered factory: SearchEngine.from_config
        cfg = preset(args.preset).override(args.overrides)
        return cfg, build_block("engine", cfg)
    if args.overrides:
        raise ValueError("--set does not apply with --index: the image fixes the configuration")
    img = read_image(args.index)
    return img.layout.cfg, SearchEngine(img.layout.cfg, img.layout,
                                        codebook=img.index.codebook)


def cmd_list(args) -> int:
    from proxima.hdl.registry import block_names
    for n in block_names():
        print(n)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m proxima.cli_hdl hdl verilog ...``)."""
    ap = argparse.ArgumentParser(prog="proxima")
    add_parser(ap.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
