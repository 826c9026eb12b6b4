"""Measure every model preset's training step and print the table of docs/models.md.

Runs scripts/bench_train.py once per preset (each in its own process, one after another) and
collects parameters, FLOPs per sample, samples/s, the share of the matmul peak, peak memory and
the machine load during the steps. Big presets on a CPU get a small batch and few steps (the
256 px SAE costs ~660 GFLOP per sample), so their figures say what a CPU can do, not a GPU.

    .venv/bin/python scripts/bench_presets.py                  # all presets, CPU
    .venv/bin/python scripts/bench_presets.py --presets original lightweight --json out.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (batch per side, timed steps) on a CPU: enough steps for a median, short enough to finish
CPU_PLAN = {
    "lightweight": (16, 8),
    "original": (16, 6),
    "dfl-h128": (8, 3),
    "sae-128": (4, 3),
    "sae-256": (1, 2),
}


def measure(preset: str, batch: int, steps: int, device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, str(ROOT / "scripts" / "bench_train.py"), "--model", preset,
               "--batch-size", str(batch), "--steps", str(steps), "--warmup", "1",
               "--device", device, "--json", str(out)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{preset}: bench_train failed:\n{proc.stderr[-2000:]}")
        return json.loads(out.read_text())


def row(r: dict) -> str:
    mem = r["memory"]
    peak_mb = mem.get("cuda_max_allocated_mb") or mem["rss_peak_mb"]
    return (f"| `{r['model']}` | {r['parameters'] / 1e6:.1f} M | {r['flops_per_sample'] / 1e9:.1f} | "
            f"{r['batch_size']} | {r['samples_per_s']:.2f} | {100 * r['fraction_of_peak']:.0f}% | "
            f"{peak_mb / 1024:.1f} GiB |")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=list(CPU_PLAN), help="presets to measure")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--batch-size", type=int, help="the same batch for every preset")
    ap.add_argument("--json", help="write all results to this file")
    args = ap.parse_args()
    results = []
    for preset in args.presets:
        batch, steps = CPU_PLAN.get(preset, (8, 3))
        if args.batch_size:
            batch = args.batch_size
        if args.device == "cuda":
            steps = max(steps, 20)
        r = measure(preset, batch, steps, args.device)
        results.append(r)
        print(f"{preset}: {r['samples_per_s']:.2f} samples/s", file=sys.stderr)
    print("| preset | parameters | GFLOP / sample (fwd+bwd) | batch / side | samples/s | "
          "share of matmul peak | peak memory |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(row(r))
    load = [r["load"].get("cores_busy_others") for r in results]
    print(f"\nother processes kept {max(x or 0 for x in load):.2f} cores busy at most "
          f"during the steps; torch {results[0]['torch']}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
