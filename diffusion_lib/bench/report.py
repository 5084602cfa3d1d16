"""The speed benchmark's report: its Markdown, its files, and the headline rows notebook 06 reads.

:func:`markdown` turns a payload of :func:`diffusion_lib.bench.speed.run_bench` into the committed
table; :func:`write` writes ``diffusion_lib/results/<device>.{json,md}`` atomically;
:func:`render` re-makes the Markdown of a committed JSON (a pure function of it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..files import write_atomic
from .tables import RESULTS_DIR


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _check(ok: bool) -> str:
    return "met" if ok else "**missed**"


def markdown(payload: dict[str, Any], command: str) -> str:
    """The committed table: per batch size, every variant; then targets and generation."""
    env, cuda = payload["env"], payload["env"]["device"].startswith("cuda")
    lines = [
        f"# Sampling speed: {env.get('gpu', 'CPU')}",
        "",
        f"Command: `{command}`",
        "",
        f"torch {env['torch']}, Python {env['python']}, {env['machine']}, "
        + (f"CPU {env['cpu']}, " if "cpu" in env else "")
        + f"{env['cpu_count']} CPUs, {env['threads']} torch threads, device {env['device']}"
        f"{' (' + env['gpu'] + ')' if 'gpu' in env else ''}, git {env['git']}. "
        f"Model `{payload['config']['model']}` (652k-parameter UNet, 8×8). Median of "
        f"{payload['config']['repeats']} runs after a warm-up, variants interleaved; "
        "spread = (slowest − fastest run) ÷ median, so ratios closer to 1 than the spread "
        "are ties. max abs Δ compares x after the timed steps with the eager loop's "
        "(same seeds), in [−1, 1] units.",
        "",
    ]
    for b in payload["batches"]:
        steps, d = b["steps"], b["derived"]
        extrapolated = "" if steps == 1000 else f" (measured over {steps} steps × {1000 / steps:g})"
        lines += [
            f"## Batch {b['batch']}: {steps} of the 1,000 DDPM steps",
            "",
            f"| variant | wall s, {steps} steps | spread | s per 1000 steps{extrapolated} | "
            "speed vs chapter | max abs Δ vs eager | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in b["rows"]:
            if r.get("seconds") is None:
                lines.append(f"| {r['variant']} | – | – | – | – | – | {r['note']} |")
                continue
            wall = f"{r['seconds']:.3f}" + (" (50 steps)" if r["per_1000_steps"] is None else "")
            runs = r["all_seconds"]
            spread = (max(runs) - min(runs)) / r["seconds"]
            lines.append(
                f"| {r['variant']} | {wall} | {spread:.0%} | {_fmt(r['per_1000_steps'], '.3f')} | "
                f"{_fmt(r['vs_chapter'], '.2f')}× | {_fmt(r['max_abs_diff_vs_eager'], '.1e')} | "
                f"{r['note']} |"
            )
        t = payload["targets"]
        lines += [
            "",
            f"- bare forward: {d['forward_ms']:.3f} ms per call",
            f"- loop overhead (eager loop ÷ {steps} bare forwards): {d['loop_overhead']:.3f}"
            + (
                ""
                if cuda
                else f" (target ≤ {t['loop_overhead_max']}: "
                f"{_check(d['loop_overhead'] <= t['loop_overhead_max'])})"
            )
            + f"; with the graph step: {d['graph_loop_overhead']:.3f}",
            f"- DDIM-50 vs DDPM-1000: {d['ddim50_speedup']:.1f}× faster "
            f"(DDPM-1000 = {d['ddpm1000_seconds']:.2f} s; target ≥ {t['ddim50_speedup_min']:g}: "
            f"{_check(d['ddim50_speedup'] >= t['ddim50_speedup_min'])})",
            f"- batched CFG vs two-pass: {d['cfg_batched_speedup']:.2f}×"
            + (
                f" (CUDA target ≥ {t['cfg_batched_speedup_min']}: "
                f"{_check(d['cfg_batched_speedup'] >= t['cfg_batched_speedup_min'])})"
                if cuda
                else " (the CUDA target ≥ 1.5× does not apply on a CPU: there a call of 2B "
                "costs two calls of B or more)"
            ),
            f"- fastest no-guidance variant: {d['best_variant']}, "
            f"{d['best_per_1000_steps']:.3f} s per 1000 steps",
        ]
        if "eager_vs_chapter" in d:
            lines.append(
                f"- the chapter's loop ÷ ours: {d['eager_vs_chapter']:.2f} (same model calls; "
                "the step arithmetic is a small share of a step here)"
            )
        target = t["cuda_s_per_1000_steps_max"].get(str(b["batch"]))
        if cuda and target is not None:
            lines.append(
                f"- CUDA target ≤ {target} s per 1000 steps: "
                f"{_check(d['best_per_1000_steps'] <= target)}"
            )
        lines += _peers(b) + _loop_cost(b) + _op_counts(b)  # none in tables made before them
        lines.append("")
    gen = payload["generation"]
    if gen:
        c = payload["config"]
        mem_key = "peak_cuda_mib" if cuda else "peak_rss_mib"
        lines += [
            f"## Generation CLI: DDIM-{c['generation_steps']}, w = 3, labels 0–9, "
            f"--batch-size {c['generation_batch']}{' --cuda-graph' if cuda else ''}",
            "",
            "| images | wall s | images/s | peak RSS MiB | peak CUDA MiB |",
            "|---|---|---|---|---|",
        ]
        for g in gen:
            lines.append(
                f"| {g['n']} | {g['seconds']:.1f} | {g['images_per_s']:.1f} | "
                f"{g['peak_rss_mib']:.0f} | {_fmt(g['peak_cuda_mib'], '.0f')} |"
            )
        small, large = min(gen, key=lambda g: g["n"]), max(gen, key=lambda g: g["n"])
        ratio = large[mem_key] / small[mem_key]
        lines += [
            "",
            f"- peak memory {large['n']} vs {small['n']} images ({mem_key}): {ratio:.3f} "
            f"(target ≤ {payload['targets']['generation_memory_ratio_max']}: "
            f"{_check(ratio <= payload['targets']['generation_memory_ratio_max'])})",
            "",
        ]
    return "\n".join(lines)


def _peers(b: dict[str, Any]) -> list[str]:
    """Library ÷ peer, from the same round robin."""
    if not b.get("peers") and not b.get("peer_notes"):
        return []
    lines = [
        "",
        "### Against the peers",
        "",
        "Same model, batch and seeds, timed in the same run, interleaved (diffusers' loops as "
        "its pipelines write them; see `diffusion_lib/bench/peers.py`). library ÷ peer = the "
        "ratio of the two wall times: below 1 the library is faster; closer to 1 than the "
        "rows' spread is a tie.",
        "",
    ]
    if b.get("peers"):
        lines += [
            "| library | peer | steps timed | library s | peer s | library ÷ peer |",
            "|---|---|---|---|---|---|",
        ]
    for v in b.get("peers", []):
        lines.append(
            f"| {v['library']} | {v['peer']} | {v['steps']} | "
            f"{v['library_seconds']:.3f} | {v['peer_seconds']:.3f} | {v['ratio']:.2f} |"
        )
    if b.get("peers") and b.get("peer_notes"):
        lines.append("")
    lines += [f"- {why}" for why in b.get("peer_notes", [])]
    return lines


def _loop_cost(b: dict[str, Any]) -> list[str]:
    """The loops with a near-free model: their own cost per step."""
    if not b.get("loop_cost"):
        return []
    faces = {v["peer"]: v["library"] for v in b.get("peers", [])}
    cost = {r["loop"]: r for r in b["loop_cost"]}
    lines = [
        "",
        "### The loop's own cost: a near-free model",
        "",
        "The model returns one cached zero tensor (no operator), so the time is the loop's own "
        "bookkeeping: whole runs, set-up included; ms per step = wall ÷ steps.",
        "",
        "| loop | steps | wall s | spread | ms per step | library ÷ this |",
        "|---|---|---|---|---|---|",
    ]
    for r in b["loop_cost"]:
        runs = r["all_seconds"]
        lib = cost.get(faces.get(r["loop"], ""))
        ratio = "–" if lib is None else f"{lib['ms_per_step'] / r['ms_per_step']:.2f}"
        who = f"library {r['loop']}" if r["library"] else r["loop"]
        lines.append(
            f"| {who} | {r['steps']} | {r['seconds']:.3f} | "
            f"{(max(runs) - min(runs)) / r['seconds']:.0%} | {r['ms_per_step']:.3f} | "
            f"{ratio} |"
        )
    return lines


def _op_counts(b: dict[str, Any]) -> list[str]:
    """Operators (and on CUDA kernels and launch calls) per step, counted."""
    counts = b.get("op_counts")
    if not counts:
        return []
    rows = counts["rows"]
    cuda = any(r.get("kernels") is not None for r in rows)

    def n(value: float | None) -> str:
        return "–" if value is None else f"{value:g}"

    def model_part(r: dict[str, Any]) -> float | None:
        if r["step"] == "forward":
            return r["ops"]
        return None if r["ops"] is None or r["ops_sampler"] is None else r["ops"] - r["ops_sampler"]

    lines = [
        "",
        f"### Operators per step (step {counts['step_index']}, counted, not timed)",
        "",
        "aten operators dispatched in one steady step (a `TorchDispatchMode`: every operator, "
        "views included); the sampler's own with the near-free model, the model's = the rest; "
        "`forward` is one bare model call. "
        + (
            "CUDA kernels run and host launch calls per step from `torch.profiler` (mean over "
            f"{counts['profiled_steps']} steps): a CUDA-graph step replays its kernels with one "
            "launch. `torch.compile`'s fused kernels bypass the dispatcher, so its rows have "
            "kernels only."
            if cuda
            else "`torch.compile`'s fused kernels bypass the dispatcher: compiled steps are "
            "counted on CUDA only (kernels and launches, `benchmarks/cuda_check.sh`)."
        ),
        "",
    ]
    if cuda:
        lines += [
            "| step | aten ops | the model's | the sampler's | CUDA kernels | the sampler's "
            "| launch calls | the sampler's |",
            "|---|---|---|---|---|---|---|---|",
        ]
    else:
        lines += ["| step | aten ops | the model's | the sampler's |", "|---|---|---|---|"]
    for r in rows:
        line = f"| {r['step']} | {n(r['ops'])} | {n(model_part(r))} | {n(r['ops_sampler'])} |"
        if cuda:
            line += (
                f" {n(r.get('kernels'))} | {n(r.get('kernels_sampler'))} | "
                f"{n(r.get('launches'))} | {n(r.get('launches_sampler'))} |"
            )
        lines.append(line)
    return lines


def render(name: str) -> str:
    """The Markdown of a committed ``diffusion_lib/results/<name>.json`` (a pure function of it)."""
    payload = json.loads((RESULTS_DIR / f"{name}.json").read_text())
    return markdown(payload, payload["command"])


def write(
    payload: dict[str, Any], command: str, name: str | None = None, out_dir: Path | None = None
) -> Path:
    """Write ``<out_dir>/<name or device slug>.{json,md}`` (default ``diffusion_lib/results``).

    Returns the JSON path.
    """
    name = name or payload["device_slug"]
    out_dir = RESULTS_DIR if out_dir is None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    write_atomic(path, (json.dumps({"command": command, **payload}, indent=1) + "\n").encode())
    write_atomic(path.with_suffix(".md"), markdown(payload, command).encode())
    return path


HEADER = (
    f"{'batch':>6}{'fwd ms':>9}{'eager s/1000':>14}{'graph s/1000':>14}{'overhead':>10}"
    f"{'DDIM-50 ×':>11}{'CFG batched ×':>15}{'compile ×':>11}{'bf16 ×':>8}"
)
"""Column titles of :func:`bench_headlines`' lines."""


def bench_headlines(result: dict[str, Any]) -> list[str]:
    """One line per batch size of a bench result, under :data:`HEADER`.

    Columns: batch; a bare forward (ms); eager and CUDA-graph loop seconds per
    1000 steps; loop overhead (loop time / bare model calls); DDIM-50's speed-up
    over DDPM-1000; batched over two-pass guidance; ``torch.compile`` and bf16
    over eager (nan where the row was not measured).
    """
    lines = []
    for b in result["batches"]:
        rows = {r["variant"]: r for r in b["rows"] if r.get("seconds") is not None}
        d = b["derived"]
        eager = rows["eager"]["per_1000_steps"]
        vs_eager = {
            k: eager / rows[k]["per_1000_steps"] if k in rows else math.nan
            for k in ("compiled", "bf16")
        }
        lines.append(
            f"{b['batch']:>6}{d['forward_ms']:>9.2f}{eager:>14.2f}"
            f"{rows['graph']['per_1000_steps']:>14.2f}{d['loop_overhead']:>10.3f}"
            f"{d['ddim50_speedup']:>11.1f}{d['cfg_batched_speedup']:>15.2f}"
            f"{vs_eager['compiled']:>11.2f}{vs_eager['bf16']:>8.2f}"
        )
    return lines


__all__ = ["HEADER", "bench_headlines", "markdown", "render", "write"]
