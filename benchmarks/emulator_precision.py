"""The emulator's product ``J_E^T v`` and fit step in float32 and float64, at each scene's shapes: one run, interleaved.

Usage:
    python benchmarks/emulator_precision.py [--repeats 200] [--threads 1]

Why: ``Emulator(precision="auto")`` computes in float64 for a 1D state on a
CPU and in the state's dtype otherwise. This prints the evidence, per shape
``(B, C, *spatial)`` of the default presets' states (the emulator built as the
default builds it, circular padding): the median time of one product (the
emulator forward and ``autograd.grad`` to its input, as every wrapped step
makes it) and of one fit (forward, backward to the weights, Adam step), the
two dtypes in alternate repetitions::

    <shape> product f32=<us> f64=<us> ratio=<f64 / f32> fit f32=<us> f64=<us> ratio=<f64 / f32> auto=<dtype>
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from sciml_zoo.nn.emulator import StepEmulator, emulator_dtype

SHAPES = {  # the default presets' batches of states (B, C, *spatial)
    "ks": (16, 1, 48),
    "ginzburg_landau": (4, 2, 64),
    "shallow_water": (4, 2, 64),
    "ks2d_24": (16, 1, 24, 24),
    "gray_scott": (4, 2, 32, 32),
    "ks2d_48": (16, 1, 48, 48),
}


def _timed(fn: Callable[[], None], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def run_shape(name: str, shape: tuple[int, ...], repeats: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    y = x + 0.1 * torch.randn(shape, generator=gen)
    params, v = torch.zeros(shape[0], 0), torch.randn(shape, generator=gen)
    torch.manual_seed(0)
    nets = {
        dt: StepEmulator(shape[1], 0, len(shape) - 2, width=12, depth=3, kernel_size=5, padding="circular")
        for dt in ("float32", "float64")
    }
    for dt, net in nets.items():
        net.to(getattr(torch, dt)).calibrate(x, params, y)
    opts = {dt: torch.optim.Adam(net.parameters(), lr=1e-3) for dt, net in nets.items()}

    def product(dt: str) -> None:
        xg = x.clone().requires_grad_(True)
        out = nets[dt](xg, params)
        torch.autograd.grad(out, xg, grad_outputs=v.to(out.dtype))

    def fit(dt: str) -> None:
        opts[dt].zero_grad(set_to_none=True)
        nets[dt].output_loss(nets[dt](x, params), y, None).backward()
        opts[dt].step()

    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(3):  # warm-up, then alternate dtypes in blocks of 10
        for dt in nets:
            product(dt)
            fit(dt)
    for _ in range(repeats // 10):
        for dt in nets:
            times.setdefault(("product", dt), []).extend(_timed(lambda dt=dt: product(dt), 10))
            times.setdefault(("fit", dt), []).extend(_timed(lambda dt=dt: fit(dt), 10))
    line = f"{name} {shape}"
    for kind in ("product", "fit"):
        a, b = (statistics.median(times[(kind, dt)]) * 1e6 for dt in ("float32", "float64"))
        line += f" {kind} f32={a:.0f}us f64={b:.0f}us ratio={b / a:.2f}"
    print(f"{line} auto={emulator_dtype('auto', x)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200, help="timed calls per dtype and kind [200]")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name, shape in SHAPES.items():
        run_shape(name, shape, args.repeats)


if __name__ == "__main__":
    main()
