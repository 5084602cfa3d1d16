"""Why is the library's eager DDPM loop slower than the chapter's on CUDA? A profile.

Runs ``--steps`` steps of each loop (bench's settings: DDPM, σ² = β, x̂0 clipped, the
shipped digits model) under :mod:`torch.profiler` and prints, per loop: wall time, the
ops that cost the most host time, and how often the host waited on the device
(``cudaStreamSynchronize``/``cudaMemcpyAsync``/``aten::item``). On a CPU it runs too
(a dry run of the script). Usage::

    python benchmarks/profile_step.py --batch 64 --steps 100 > profile.txt
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from diffusion_lib.bench.chapter_loop import chapter_ddpm_sample
from diffusion_lib.device import usable_device
from diffusion_lib.pretrained import load_pretrained
from diffusion_lib.sampling import sample_progressive

HOST_WAITS = (
    "cudaStreamSynchronize",
    "cudaDeviceSynchronize",
    "cudaMemcpyAsync",
    "aten::item",
    "aten::_local_scalar_dense",
    "cudaLaunchKernel",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = usable_device(args.device)
    model, schedule = load_pretrained("digits", device=device)
    shape = (args.batch, 1, 8, 8)

    def chapter() -> None:
        torch.manual_seed(0)
        chapter_ddpm_sample(model, schedule, shape, device, max_steps=args.steps)

    def eager() -> None:
        it = sample_progressive(
            model,
            schedule,
            shape,
            sampler="ddpm",
            variance="beta",
            x0_mode="clip",
            seed=0,
            progress=False,
            _copy_steps=False,
        )
        for k, _ in enumerate(it):
            if k + 1 >= args.steps:
                break

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    for name, fn in (("chapter", chapter), ("eager", eager)):
        fn()  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        with profile(activities=activities) as prof:
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
        events = prof.key_averages()
        print(
            f"\n=== {name}: {wall * 1000 / args.steps:.2f} ms per step "
            f"(batch {args.batch}, {args.steps} steps, {device}) ==="
        )
        counts = {e.key: e.count for e in events if e.key in HOST_WAITS}
        print("host waits / launches:", {k: counts.get(k, 0) for k in HOST_WAITS})
        print(events.table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
