"""ResNet-50-shaped checkpoint on a local moto_server: paramarena zarr vs one npz blob via s3fs.

Starts ``moto_server`` on a free loopback port, then times (median of 3, same process) a zarr
save/load against ``np.savez`` into memory + one ``pipe``/``cat`` of the blob through s3fs, and
counts the objects written.
"""

from __future__ import annotations

import io
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from collections.abc import Callable

import boto3
import numpy as np
import s3fs

from paramarena import storage
from paramarena.resnet50 import resnet50_shapes

REPEATS = 3


def median_time(repeat: int, fn: Callable[[], object]) -> float:
    """Median wall time of ``repeat`` calls of ``fn`` (s)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_traced_mb(fn: Callable[[], object]) -> float:
    """Peak Python-allocated memory during ``fn`` (MB, tracemalloc; numpy buffers included)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket="bench")
        opts = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        fs = s3fs.S3FileSystem(**opts)
        rng = np.random.default_rng(0)
        arrays = {n: rng.standard_normal(s, dtype=np.float32) for n, s in resnet50_shapes()}
        total = sum(a.nbytes for a in arrays.values())

        def npz_save() -> None:
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            fs.pipe_file("bench/blob.npz", buf.getvalue())

        def npz_load() -> None:
            dict(np.load(io.BytesIO(fs.cat_file("bench/blob.npz")), allow_pickle=False))

        url = "s3://bench/ckpt.zarr"
        rows = [
            ("npz blob via s3fs", median_time(REPEATS, npz_save), median_time(REPEATS, npz_load)),
            (
                "paramarena zarr",
                median_time(REPEATS, lambda: storage.save(url, arrays, storage_options=opts)),
                median_time(REPEATS, lambda: storage.load(url, storage_options=opts)),
            ),
        ]
        try:
            import obstore  # noqa: F401

            ob = {"storage_options": opts, "client": "obstore"}
            rows.append(
                (
                    "paramarena zarr, client='obstore'",
                    median_time(REPEATS, lambda: storage.save(url, arrays, **ob)),
                    median_time(REPEATS, lambda: storage.load(url, **ob)),
                )
            )
        except ImportError:
            pass
        objects = len(fs.find("bench/ckpt.zarr"))
        clients = ["fsspec"] + (["obstore"] if len(rows) > 2 else [])
        peaks = {
            (client, n): peak_traced_mb(
                lambda c=client, n=n: storage.save(
                    url, arrays, storage_options=opts, concurrency=n, client=c
                )
            )
            for client in clients
            for n in (1, 4)
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(
        f"moto_server on 127.0.0.1, {len(arrays)} arrays, {total / 1e6:.1f} MB, "
        f"median of {REPEATS}\n"
    )
    print("| case | save s | load s | save speed vs npz blob | load speed vs npz blob |")
    print("|---|---|---|---|---|")
    base_s, base_l = rows[0][1], rows[0][2]
    for name, save, load in rows:
        print(f"| {name} | {save:.3f} | {load:.3f} | {base_s / save:.2f}x | {base_l / load:.2f}x |")
    print(
        f"\nzarr objects: {objects} for {total / 1e6:.0f} MB "
        f"({objects / (total / 1e8):.1f} per 100 MB)"
    )
    from paramarena.storage.zarr.writer import DEFAULT_CHUNK_BYTES

    chunk_mb = total / 1e6 / -(-total // DEFAULT_CHUNK_BYTES)  # equal chunks of the packed array
    for (client, n), peak in peaks.items():
        print(
            f"Peak extra memory of an S3 save, client={client!r}, concurrency={n} "
            f"(tracemalloc): {peak:.1f} MB ({peak / chunk_mb / n:.1f} chunks per writer)"
        )


if __name__ == "__main__":
    main()
