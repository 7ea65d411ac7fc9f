"""The ``paramarena`` command: ``demo``, ``inspect``, ``convert``, ``verify``, ``formats``.

Exit status (docs/cli.md): 0 on success; 1 when the checkpoint is damaged or unfinished
(``verify`` finds bad arrays, ``inspect`` finds an uncommitted checkpoint) or the demo fails its
checks; 2 when the input cannot be read at all (missing, not a checkpoint, unreachable, a
missing extra) or the arguments are wrong; 3 when ``verify`` read everything but the format
carries no checksums, so nothing could be verified (MXNet ``.params``). Errors paramarena raises
on purpose and ``OSError`` are printed as one ``error:`` line, never as a traceback.

Examples
--------
::

    paramarena inspect model-0000.params
    paramarena convert model-0000.params model.zarr
    paramarena verify s3://bucket/model.zarr --storage-option anon=false
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from paramarena.errors import ParamarenaError, UncommittedCheckpointError
from paramarena.hooks.records import CheckpointInfo
from paramarena.storage.fileio import is_remote

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_ERROR = 2
EXIT_UNVERIFIED = 3


def _storage_option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def _package_version() -> str:
    """Return the installed package's version (without importing its heavy parts)."""
    from paramarena import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``paramarena`` command."""
    parser = argparse.ArgumentParser(
        prog="paramarena",
        description="Inspect, convert and verify parameter checkpoints; run the demo.",
    )
    parser.add_argument("--version", action="version", version=f"paramarena {_package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="build, initialize, save, load and verify a ResNet-50 dict")
    demo.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="write the checkpoint into DIR and keep it (default: a temporary directory)",
    )
    demo.add_argument(
        "--format",
        default="zarr",
        choices=("zarr", "npz", "params"),
        help="checkpoint format: zarr (chunked, checksummed), npz, or MXNet .params "
        "(default: %(default)s)",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initial values; the same seed gives the same values "
        "(default: %(default)s)",
    )

    so_help = "fsspec option for remote URLs (repeatable); VALUE is JSON if it parses, else text"

    inspect = sub.add_parser("inspect", help="list names, shapes, dtypes and sizes")
    inspect.add_argument("path", metavar="PATH|URL")
    inspect.add_argument("--format", default=None, help="format name (default: from suffix)")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")

    convert = sub.add_parser("convert", help="copy a checkpoint into another format")
    convert.add_argument("src", metavar="SRC")
    convert.add_argument("dst", metavar="DST")
    convert.add_argument("--format-in", default=None, help="format of SRC (default: suffix)")
    convert.add_argument("--format-out", default=None, help="format of DST (default: suffix)")
    convert.add_argument("--no-progress", action="store_true", help="never show a progress bar")

    verify = sub.add_parser(
        "verify",
        help="re-read everything; exit 1 listing bad arrays, 3 if the format has no checksums",
    )
    verify.add_argument("path", metavar="PATH|URL")
    verify.add_argument("--format", default=None, help="format name (default: from suffix)")

    for command in (inspect, convert, verify):
        command.add_argument(
            "--storage-option",
            "-o",
            action="append",
            default=[],
            type=_storage_option,
            metavar="KEY=VALUE",
            help=so_help,
        )

    sub.add_parser("formats", help="list the registered storage formats")
    return parser


def _human(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - loop always returns


def _remote_options(uri: str, args: argparse.Namespace) -> dict[str, Any]:
    options = dict(args.storage_option)
    if options and is_remote(uri):
        return {"storage_options": options}
    return {}


def _warn_unused_options(args: argparse.Namespace, uris: Sequence[str], out: TextIO) -> None:
    if args.storage_option and not any(is_remote(u) for u in uris):
        print("warning: --storage-option ignored: no remote URL given", file=out)


def _print_table(info: CheckpointInfo, out: TextIO) -> None:
    total = sum(a.nbytes for a in info.arrays)
    committed = "yes" if info.committed else "NO (incomplete save)"
    print(f"{info.uri}", file=out)
    print(
        f"format: {info.format}   committed: {committed}   named: "
        f"{'yes' if info.named else 'no (list)'}   arrays: {len(info.arrays)}   "
        f"total: {_human(total)}",
        file=out,
    )
    sparse = any(a.stype != "default" for a in info.arrays)
    rows = [
        (
            a.name,
            "(" + ", ".join(map(str, a.shape)) + ("," if len(a.shape) == 1 else "") + ")",
            a.dtype,
            _human(a.nbytes),
            a.stype,
        )
        for a in info.arrays
    ]
    header = ("name", "shape", "dtype", "size", "stype")
    columns = 5 if sparse else 4
    widths = [max([len(header[i]), *(len(r[i]) for r in rows)]) for i in range(columns)]
    lines = [header[:columns], *(r[:columns] for r in rows)]
    for line in lines:
        cells = [
            cell.rjust(widths[i]) if i == 3 else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        print("  ".join(cells).rstrip(), file=out)


def _info_json(info: CheckpointInfo) -> str:
    return json.dumps(
        {
            "uri": info.uri,
            "format": info.format,
            "committed": info.committed,
            "named": info.named,
            "arrays": [
                {
                    "name": a.name,
                    "shape": list(a.shape),
                    "dtype": a.dtype,
                    "nbytes": a.nbytes,
                    "stype": a.stype,
                }
                for a in info.arrays
            ],
            "metadata": dict(info.metadata),
        },
        indent=2,
        default=str,
    )


def _cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        from paramarena import demo
    except ImportError as exc:
        print(f"error: the demo is not available in this installation ({exc})", file=err)
        return EXIT_ERROR
    return int(demo.run(args.out, args.format, args.seed))


def _cmd_inspect(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from paramarena import storage

    _warn_unused_options(args, [args.path], err)
    try:
        info = storage.inspect(args.path, format=args.format, **_remote_options(args.path, args))
    except UncommittedCheckpointError as exc:
        if args.json:
            print(json.dumps({"uri": args.path, "committed": False, "error": str(exc)}), file=out)
        else:
            print(f"{args.path}\ncommitted: NO (incomplete save): {exc}", file=out)
        return EXIT_PROBLEMS
    print(_info_json(info) if args.json else "", end="", file=out)
    if args.json:
        print(file=out)
    else:
        _print_table(info, out)
    return EXIT_OK if info.committed else EXIT_PROBLEMS


def _cmd_convert(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from paramarena import storage

    _warn_unused_options(args, [args.src, args.dst], err)
    progress = False if args.no_progress else None
    arrays = storage.load(
        args.src, format=args.format_in, progress=progress, **_remote_options(args.src, args)
    )
    storage.save(
        args.dst,
        arrays,
        format=args.format_out,
        progress=progress,
        **_remote_options(args.dst, args),
    )
    src_format = storage.resolve(args.src, "r", args.format_in).name
    dst_format = storage.resolve(args.dst, "w", args.format_out).name
    print(
        f"converted {len(arrays)} arrays: {args.src} ({src_format}) -> {args.dst} ({dst_format})",
        file=out,
    )
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from paramarena import storage

    _warn_unused_options(args, [args.path], err)
    report = storage.verify(args.path, format=args.format, **_remote_options(args.path, args))
    if report.ok and not report.checksummed:
        print(
            f"readable, {report.checked} arrays in {args.path}; this format carries no "
            "checksums: nothing verified",
            file=out,
        )
        return EXIT_UNVERIFIED
    if report.ok:
        print(f"OK: {report.checked} arrays verified in {args.path}", file=out)
        return EXIT_OK
    print(
        f"FAILED: {len(report.problems)} problem(s) in {args.path} "
        f"({report.checked} arrays checked):",
        file=out,
    )
    for name, problem in report.problems:
        print(f"  {name}: {problem}", file=out)
    return EXIT_PROBLEMS


def _cmd_formats(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from paramarena.hooks.manager import storage_specs

    for name, spec in sorted(storage_specs().items()):
        handles = ", ".join([*spec.suffixes, *(f"{s}://" for s in spec.schemes)])
        print(f"{name:12s} {handles:40s} {spec.description}".rstrip(), file=out)
    return EXIT_OK


def _one_line(exc: BaseException) -> str:
    """Return the message of ``exc`` on one line (a raw ``OSError`` gets its path added)."""
    text = str(exc)
    if isinstance(exc, OSError) and not isinstance(exc, ParamarenaError):
        where = exc.filename if exc.filename is not None else ""
        text = f"{exc.strerror or text}: {where!r}" if where else (exc.strerror or text)
    return " ".join(text.split()) or type(exc).__name__


_COMMANDS = {
    "demo": _cmd_demo,
    "inspect": _cmd_inspect,
    "convert": _cmd_convert,
    "verify": _cmd_verify,
    "formats": _cmd_formats,
}


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the ``paramarena`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).
    stdout, stderr : file-like, optional
        Where to print (default: the process's streams).

    Returns
    -------
    int
        The exit status (0 ok, 1 damaged or unfinished, 2 error, 3 nothing to verify with).
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        return _COMMANDS[args.command](args, out, err)
    except (ParamarenaError, OSError) as exc:
        print(f"error: {_one_line(exc)}", file=err)
        return EXIT_ERROR
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        print("interrupted", file=err)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
