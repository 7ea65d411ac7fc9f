"""Kernel benchmarks: paramarena's Numba kernels against numpy in the same process.

Run ``python benchmarks/bench_kernels.py [--quick]`` (or ``nox -s benchmarks``). Prints a markdown
table of medians and ratios (numpy time / paramarena time: > 1 means paramarena is faster), the
same work done by PyTorch when it is importable (CPU build), then first-call latencies measured
in fresh subprocesses. Numbers on a shared 2-core machine are noisy;
compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paramarena import kernels
from paramarena.devices.arena import Arena
from paramarena.params.parameter_dict import ParameterDict
from resnet50_shapes import RESNET50_SHAPES, TINY_SHAPES


def median_seconds(
    fn: Callable[[], object], repeat: int, number: int = 1, warmup: int = 1
) -> float:
    for _ in range(warmup):
        fn()  # warm-up (JIT compile / cache load, page faults, the allocator's mmap threshold)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times)


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def make_arrays(shapes: list[tuple[str, tuple[int, ...]]]) -> list[tuple[str, np.ndarray]]:
    arena = Arena(np.float32)
    views = arena.allocate_many([s for _, s in shapes])
    for v in views:
        v.fill(0)
    return [(n, v) for (n, _), v in zip(shapes, views, strict=True)]


def xavier_numpy(gen: np.random.Generator, name: str, arr: np.ndarray) -> None:
    if name.endswith("gamma"):
        arr.fill(1)
    elif name.endswith(("beta", "bias")):
        arr.fill(0)
    else:
        fan_in = arr.shape[1] * math.prod(arr.shape[2:])
        fan_out = arr.shape[0] * math.prod(arr.shape[2:])
        scale = math.sqrt(3.0 * 2.0 / (fan_in + fan_out))
        gen.random(out=arr, dtype=np.float32)
        arr *= 2 * scale
        arr -= scale


def run_inits(rows: list[list[str]], label: str, shapes, repeat: int) -> None:
    from paramarena.init import InitDesc, Xavier

    arrays = make_arrays(shapes)
    gen = np.random.default_rng(0)

    def pd_uniform() -> None:
        for name, a in arrays:
            kernels.fill_uniform(a, -0.07, 0.07, seed=0, key=name)

    def np_uniform() -> None:
        for _, a in arrays:
            gen.random(out=a, dtype=np.float32)

    def pd_normal() -> None:
        for name, a in arrays:
            kernels.fill_normal(a, 0.0, 0.01, seed=0, key=name)

    def np_normal() -> None:
        for _, a in arrays:
            gen.standard_normal(out=a, dtype=np.float32)

    cases = [
        ("Uniform init", pd_uniform, np_uniform, "Generator.random(out=)", ">= 3x (R50)"),
        ("Normal init", pd_normal, np_normal, "Generator.standard_normal(out=)", ">= 4x (R50)"),
    ]
    if all(len(s) != 1 or n.endswith(("gamma", "beta", "bias")) for n, s in shapes):
        xavier = Xavier()
        descs = [(InitDesc(n, seed=0), a) for n, a in arrays]

        def pd_xavier() -> None:
            for d, a in descs:
                xavier(d, a)

        def np_xavier() -> None:
            for n, a in arrays:
                xavier_numpy(gen, n, a)

        cases.append(("Xavier init", pd_xavier, np_xavier, "random(out=) + scale", ""))
    for what, pd_fn, np_fn, ref, target in cases:
        t_pd = median_seconds(pd_fn, repeat)
        t_np = median_seconds(np_fn, repeat)
        rows.append(
            [f"{what}, {label}", fmt(t_pd), f"{fmt(t_np)} ({ref})", f"{t_np / t_pd:.2f}x", target]
        )


def run_zero(rows: list[list[str]], label: str, shapes, repeat: int, number: int) -> None:
    params = ParameterDict("bench_")
    for name, shape in shapes:
        params.get(name, shape=shape)
    params.initialize("zeros")
    grads = [p.grad() for p in params.values()]
    t_pd = median_seconds(params.zero_grad, repeat, number)

    def np_loop() -> None:
        for g in grads:
            g[...] = 0

    t_np = median_seconds(np_loop, repeat, number)
    target = "<= 10 µs" if len(shapes) == 1000 else ""
    rows.append([f"ParameterDict.zero_grad, {label}", fmt(t_pd), f"{fmt(t_np)} (loop g[...] = 0)",
                 f"{t_np / t_pd:.2f}x", target])  # fmt: skip
    total = sum(math.prod(s) for _, s in shapes)
    if total > 1_000_000:
        flat = np.empty(total, np.float32)
        t_fill = median_seconds(lambda: flat.fill(0), repeat)
        t_zeros = median_seconds(lambda: np.zeros(total, np.float32), repeat)
        gbs = total * 4 / 1e9
        rows.append([f"zero_grad bandwidth, {label}", f"{gbs / t_pd:.1f} GB/s",
                     f"{gbs / t_fill:.1f} GB/s (fill(0) memset); {gbs / t_zeros:.1f} GB/s "
                     f"(np.zeros, lazy pages)", f"{t_fill / t_pd:.0%} of memset",
                     ">= 70% of memset"])  # fmt: skip


def run_casts(rows: list[list[str]], repeat: int, label: str = "R50 (25.6M)") -> None:
    total = sum(math.prod(s) for _, s in RESNET50_SHAPES)
    src = np.empty(total, np.float32)
    kernels.fill_normal(src, 0.0, 1.0, seed=0, key="cast")
    for name, dt in [("float16", np.dtype(np.float16)), ("bfloat16", np.dtype(ml_dtypes.bfloat16))]:
        # casts allocate a new 25.6M-element array per call: until glibc has raised its mmap
        # threshold, each one maps fresh pages (~50 ms of page faults here), so warm up longer
        t_pd = median_seconds(lambda dt=dt: kernels.cast(src, dt), repeat, warmup=4)
        t_np = median_seconds(lambda dt=dt: src.astype(dt), repeat, warmup=4)
        target = ">= 5x" if name == "float16" else ""
        rows.append([f"cast f32->{name}, {label}", fmt(t_pd), f"{fmt(t_np)} (astype)",
                     f"{t_np / t_pd:.2f}x", target])  # fmt: skip


def run_torch(rows: list[list[str]], repeat: int) -> None:
    """The same work done by PyTorch (CPU) in this process, when torch is importable."""
    try:
        import torch
    except ImportError:
        rows.append(["PyTorch", "not installed", "", "", ""])
        return
    from torch.nn import init as tinit

    from paramarena.init import InitDesc, Xavier

    arrays = make_arrays(RESNET50_SHAPES)
    tensors = [(n, torch.from_numpy(a)) for n, a in arrays]
    xavier = Xavier()
    descs = [(InitDesc(n, seed=0), a) for n, a in arrays]

    def torch_xavier() -> None:
        for n, t in tensors:
            if n.endswith("gamma"):
                tinit.ones_(t)
            elif n.endswith(("beta", "bias")):
                tinit.zeros_(t)
            else:
                tinit.xavier_uniform_(t)

    cases = [
        ("Uniform init", lambda: [kernels.fill_uniform(a, -0.07, 0.07, seed=0, key=n)
                                  for n, a in arrays],
         lambda: [tinit.uniform_(t, -0.07, 0.07) for _, t in tensors], "nn.init.uniform_"),
        ("Normal init", lambda: [kernels.fill_normal(a, 0.0, 0.01, seed=0, key=n)
                                 for n, a in arrays],
         lambda: [tinit.normal_(t, 0.0, 0.01) for _, t in tensors], "nn.init.normal_"),
        ("Xavier init", lambda: [xavier(d, a) for d, a in descs], torch_xavier,
         "nn.init.xavier_uniform_ + ones_/zeros_"),
    ]  # fmt: skip
    total = sum(math.prod(s) for _, s in RESNET50_SHAPES)
    src = np.empty(total, np.float32)
    kernels.fill_normal(src, 0.0, 1.0, seed=0, key="cast")
    tsrc = torch.from_numpy(src)
    bf16 = np.dtype(ml_dtypes.bfloat16)
    cases += [
        ("cast f32->float16", lambda: kernels.cast(src, np.float16), tsrc.half, "Tensor.half()"),
        ("cast f32->bfloat16", lambda: kernels.cast(src, bf16), tsrc.bfloat16,
         "Tensor.bfloat16()"),
    ]  # fmt: skip

    def quiet() -> None:
        time.sleep(0.5)  # let PyTorch's OpenMP threads stop spinning before timing our kernels

    for what, pd_fn, torch_fn, ref in cases:
        quiet()
        t_pd = median_seconds(pd_fn, repeat, warmup=4)
        t_torch = median_seconds(torch_fn, repeat, warmup=4)
        rows.append([f"{what}, ResNet-50, vs PyTorch", fmt(t_pd), f"{fmt(t_torch)} ({ref})",
                     f"{t_torch / t_pd:.2f}x", ""])  # fmt: skip
    for label, shapes, number in (
        ("1000 x (4,)", TINY_SHAPES, 200),
        ("ResNet-50", RESNET50_SHAPES, 1),
    ):
        params = ParameterDict("bench_")
        for name, shape in shapes:
            params.get(name, shape=shape)
        params.initialize("zeros")
        grads = [torch.zeros(s) for _, s in shapes]
        quiet()
        t_pd = median_seconds(params.zero_grad, repeat, number)
        t_torch = median_seconds(lambda g=grads: torch._foreach_zero_(g), repeat, number)
        rows.append([f"zero_grad, {label}, vs PyTorch", fmt(t_pd),
                     f"{fmt(t_torch)} (torch._foreach_zero_, the optimizer's fast path)",
                     f"{t_torch / t_pd:.2f}x", ""])  # fmt: skip
    rows.append([f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads", "", "", "", ""])


FIRST_CALL = r"""
import time
t0 = time.perf_counter()
import numpy as np
import paramarena
t_import = time.perf_counter() - t0
from paramarena.demo import build_resnet50
params = build_resnet50()
t1 = time.perf_counter()
params.initialize(paramarena.init.Xavier(), seed=0)
t_init = time.perf_counter() - t1
params.zero_grad()
print(f"{t_import:.4f} {t_init:.4f} {time.perf_counter() - t0:.4f}")
"""


def first_call_latency(rows: list[list[str]]) -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold (empty NUMBA_CACHE_DIR)", "warm (cached kernels)"):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()  # fmt: skip
            wall = time.perf_counter() - t0
            t_import, t_init, t_total = (float(x) for x in out)
            target = "<= 1 s total" if label.startswith("warm") else ""
            rows.append([f"new process: import + ResNet-50 initialize(Xavier), {label}",
                         f"{t_total:.2f} s (import {t_import:.2f} s, initialize {t_init:.2f} s)",
                         f"process wall {wall:.2f} s", "", target])  # fmt: skip


def import_time(rows: list[list[str]], repeat: int) -> None:
    def wall(code: str) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    t_pd = wall("import paramarena")
    t_np = wall("import numpy")
    t_py = wall("pass")
    rows.append(["`python -c 'import paramarena'` (minus bare interpreter)", fmt(t_pd - t_py),
                 f"{fmt(t_np - t_py)} (import numpy alone)", "", "< 150 ms"])  # fmt: skip
    check = "import sys, paramarena; print('numba' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    rows.append(["numba imported by `import paramarena`?", loaded.stdout.strip(), "", "", "False"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeat = 3 if args.quick else 7
    import numba

    rows: list[list[str]] = []
    run_inits(rows, "ResNet-50 (161 arrays, 25.6M f32)", RESNET50_SHAPES, repeat)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # per-core ratio: insensitive to other processes on the cores
    run_inits(rows, "ResNet-50, 1 thread", RESNET50_SHAPES, repeat)
    run_casts(rows, repeat, "1 thread")
    numba.set_num_threads(threads)
    run_inits(rows, "1000 x (4,)", TINY_SHAPES, repeat)
    run_zero(rows, "1000 x (4,)", TINY_SHAPES, repeat, number=200)
    run_zero(rows, "ResNet-50", RESNET50_SHAPES, repeat, number=1)
    run_casts(rows, repeat)
    run_torch(rows, repeat)
    first_call_latency(rows)
    import_time(rows, repeat)
    print(f"numpy {np.__version__}, numba {numba.__version__} ({numba.threading_layer()} "
          f"threading layer), threads {numba.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}\n")  # fmt: skip
    print("| case | paramarena | numpy reference | ratio | target |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
