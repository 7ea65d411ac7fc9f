"""Seed checkpoints and seeded mutated cases for every storage format the fuzzer covers.

:func:`build_seeds` writes a few valid checkpoints per format (dicts, lists, bfloat16, 0-d,
empty arrays, multi-chunk and compressed zarr, sparse MXNet records). :func:`make_case` turns
``(format, case number)`` into one mutated input on disk; the same seed and number always give
the same input.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import random
import shutil
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from fuzz_mutate import INTERESTING_VALUES, mutate_bytes, mutate_json

__all__ = ["FORMATS", "SUFFIX", "build_seeds", "make_case"]

#: safetensors is a plugin (plugins/paramarena-safetensors): fuzzed where it is installed (the
#: ``fuzz`` and ``plugins`` nox sessions), left out where it is not (the ``tests`` sessions).
_SAFETENSORS = importlib.util.find_spec("paramarena_safetensors") is not None
FORMATS = ("npz", "params", "zarr", "zarr.zip") + (("safetensors",) if _SAFETENSORS else ())
SUFFIX = {
    "npz": ".npz",
    "params": ".params",
    "zarr": ".zarr",
    "zarr.zip": ".zarr.zip",
    "safetensors": ".safetensors",
}
_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"


def _arrays() -> list[dict[str, np.ndarray] | list[np.ndarray]]:
    import ml_dtypes

    rng = np.random.default_rng(0)
    return [
        {
            "w": rng.standard_normal((3, 4)).astype("float32"),
            "b": np.arange(4, dtype="float32"),
            "idx": np.arange(5, dtype="int64"),
        },
        {"bf": np.ones((2, 3), ml_dtypes.bfloat16), "s": np.array(2.5), "e": np.zeros((0, 3))},
        [np.arange(6, dtype="int32").reshape(2, 3), np.ones(3, dtype="float64")],
    ]


def build_seeds(directory: Path) -> dict[str, list[Path]]:
    """Write the seed checkpoints under ``directory``; return them per format."""
    from paramarena import storage

    directory.mkdir(parents=True, exist_ok=True)
    seeds: dict[str, list[Path]] = {f: [] for f in FORMATS}
    for i, arrays in enumerate(_arrays()):
        for fmt in FORMATS:
            path = directory / f"seed{i}{SUFFIX[fmt]}"
            if fmt == "params" and isinstance(arrays, dict) and "bf" in arrays:
                arrays = {k: v for k, v in arrays.items() if k != "bf"}
            options: dict[str, Any] = {}
            if fmt in ("zarr", "zarr.zip"):
                options["chunk_bytes"] = 16
            storage.save(path, arrays, **options)
            seeds[fmt].append(path)
    compressed = directory / "seed_deflate.npz"
    storage.save(compressed, _arrays()[0], compress=True)
    seeds["npz"].append(compressed)
    zstd = directory / "seed_zstd.zarr"
    storage.save(zstd, _arrays()[0], compression="zstd", chunk_bytes=16)
    seeds["zarr"].append(zstd)
    for name in ("ndarray_sparse.params", "gluon_paramarena_full.params"):
        if (_FIXTURES / name).exists():
            seeds["params"].append(_FIXTURES / name)
    for name in ("ndarray_sparse.npz", "checkpoint-0000.npz"):
        if (_FIXTURES / name).exists():
            seeds["npz"].append(_FIXTURES / name)
    return seeds


# -- single files ---------------------------------------------------------------------------------


def _mutate_npz(data: bytes, rng: random.Random) -> bytes:
    """Byte damage, or a rebuilt archive with edited headers, names or metadata comment."""
    if rng.random() < 0.6:
        return mutate_bytes(data, rng)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as src:
            members = [(info, src.read(info)) for info in src.infolist()]
            comment = src.comment
    except zipfile.BadZipFile:
        return mutate_bytes(data, rng)
    choice = rng.randrange(4)
    if choice == 0 and members:  # edit an .npy header dict
        k = rng.randrange(len(members))
        info, raw = members[k]
        end = raw.find(b"}")
        if end > 0:
            head = raw[: end + 1].decode("latin1")
            shape = rng.choice(("(-1, 6)", "(0, 4611686018427387904)", "(1000000000000,)", "()"))
            for key in ("'shape': (", "'descr': '"):
                at = head.find(key)
                if at >= 0 and key.startswith("'shape'"):
                    close = head.find(")", at)
                    head = head[: at + 9] + shape + head[close + 1 :]
                elif at >= 0 and rng.random() < 0.3:
                    close = head.find("'", at + len(key))
                    descr = rng.choice(("|O", "<f8", "V8", "<U4", "S0"))
                    head = head[: at + len(key)] + descr + head[close:]
            members[k] = (info, head.encode("latin1") + raw[end + 1 :])
    elif choice == 1 and members:  # names: long, traversal, duplicated
        k = rng.randrange(len(members))
        info, raw = members[k]
        info.filename = rng.choice(("../x.npy", "/abs.npy", "a" * 70000 + ".npy", "w.npz", "d/"))
        members[k] = (info, raw)
    elif choice == 2:  # the metadata comment
        try:
            doc = json.loads(comment.decode("utf-8")) if comment else {"named": True}
        except (UnicodeDecodeError, ValueError):
            doc = {}
        comment = json.dumps(mutate_json(doc, rng)).encode()
        if rng.random() < 0.1:
            comment = b"x" * 65535
    else:
        rng.shuffle(members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info, raw in members:
            with contextlib.suppress(ValueError, struct.error):
                dst.writestr(info, raw)
        dst.comment = comment[:65535]
    return mutate_bytes(out.getvalue(), rng, 1) if rng.random() < 0.2 else out.getvalue()


def _mutate_safetensors(data: bytes, rng: random.Random) -> bytes:
    """Byte damage, or an edited JSON header (length fixed up, sometimes its checksum dropped)."""
    if rng.random() < 0.5 or len(data) < 8:
        return mutate_bytes(data, rng)
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + n])
    except ValueError:
        return mutate_bytes(data, rng)
    if rng.random() < 0.5 and isinstance(header.get("__metadata__"), dict):
        header["__metadata__"].pop("paramarena.header_crc32", None)
    header = mutate_json(header, rng)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data[8 + n :]


def _mutate_file(fmt: str, data: bytes, rng: random.Random) -> bytes:
    if fmt == "npz":
        return _mutate_npz(data, rng)
    if fmt == "safetensors":
        return _mutate_safetensors(data, rng)
    return mutate_bytes(data, rng)


# -- zarr directories ----------------------------------------------------------------------------


def _fix_commit(root: Path) -> None:
    """Make COMMIT's manifest checksum match the (edited) manifest, so edits get past it."""
    import crc32c

    try:
        commit = json.loads((root / "COMMIT").read_bytes())
        manifest = (root / str(commit["version"]) / "manifest.json").read_bytes()
        commit["manifest_crc32c"] = f"{crc32c.crc32c(manifest):08x}"
        (root / "COMMIT").write_text(json.dumps(commit))
    except (OSError, ValueError, KeyError, TypeError):
        pass


def _mutate_zarr_tree(root: Path, rng: random.Random, outside: Path) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for _ in range(rng.randint(1, 2)):
        if not files:
            return
        target = rng.choice(files)
        files.remove(target)
        roll = rng.random()
        if target.name.endswith(".json") or target.name == "COMMIT":
            if roll < 0.75:
                try:
                    doc = json.loads(target.read_bytes())
                    target.write_text(json.dumps(mutate_json(doc, rng)))
                except (ValueError, UnicodeDecodeError):
                    target.write_bytes(mutate_bytes(target.read_bytes(), rng))
            else:
                target.write_bytes(mutate_bytes(target.read_bytes(), rng))
            if target.name == "manifest.json" and rng.random() < 0.8:
                _fix_commit(root)
        elif roll < 0.6:
            target.write_bytes(mutate_bytes(target.read_bytes(), rng))
        elif roll < 0.7:
            target.unlink()
        elif roll < 0.8 and hasattr(os, "mkfifo"):
            target.unlink()
            os.mkfifo(target)
        elif roll < 0.9:
            target.unlink()
            target.symlink_to(rng.choice((outside, outside.parent, Path("/dev/zero"))))
        else:
            target.unlink()
            target.mkdir()
    if rng.random() < 0.1:  # a whole version directory or the root linked elsewhere
        versions = [p for p in root.iterdir() if p.is_dir()]
        if versions:
            victim = rng.choice(versions)
            shutil.rmtree(victim)
            victim.symlink_to(outside.parent)


def _zip_tree(directory: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and not path.is_symlink():
                archive.write(path, path.relative_to(directory).as_posix())


def make_case(
    fmt: str, seeds: dict[str, list[Path]], seed: int, number: int, workdir: Path
) -> Path:
    """Write mutated input ``number`` of ``fmt`` under ``workdir`` and return its path."""
    rng = random.Random(f"{seed}:{fmt}:{number}")
    source = rng.choice(seeds[fmt])
    target = workdir / f"case{SUFFIX[fmt]}"
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    outside = workdir / "outside.bin"
    if not outside.exists():
        outside.write_bytes(b"secret outside the checkpoint\n" * 4)
    if fmt == "zarr":
        shutil.copytree(source, target, symlinks=True)
        _mutate_zarr_tree(target, rng, outside)
        return target
    if fmt == "zarr.zip" and rng.random() < 0.5:
        tree = workdir / "tree"
        if tree.exists():
            shutil.rmtree(tree)
        with zipfile.ZipFile(source) as archive:
            archive.extractall(tree)
        _mutate_zarr_tree(tree, rng, outside)
        _zip_tree(tree, target)
        if rng.random() < 0.1:
            with warnings.catch_warnings(), zipfile.ZipFile(target, "a") as archive:
                warnings.simplefilter("ignore")  # a duplicate member name is the point
                archive.writestr(
                    rng.choice(("../evil", "/abs", "COMMIT")),
                    json.dumps(rng.choice(INTERESTING_VALUES)),
                )
        return target
    target.write_bytes(_mutate_file(fmt, source.read_bytes(), rng))
    return target
