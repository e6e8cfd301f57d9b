#!/usr/bin/env python3
"""Reference for the kernel benchmark: torch.matmul in f32 (TF32 off), median of timed runs.

Prints one JSON line per size, in the same shape as `kernels`' bench, so the two can be put side
by side. Run on the same machine and in the same call as our bench (scripts/device_check.sh).
"""
import argparse
import json
import statistics

import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1024,2048,4096")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    for n in (int(s) for s in args.sizes.split(",")):
        # Random data: zeros can run faster than real data.
        a = torch.randn(n, n, device=args.device)
        b = torch.randn(n, n, device=args.device)
        times = []
        for i in range(args.reps + 3):
            if args.device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                torch.matmul(a, b)
                end.record()
                torch.cuda.synchronize()
                elapsed = start.elapsed_time(end) / 1e3
            else:
                import time
                t0 = time.perf_counter()
                torch.matmul(a, b)
                elapsed = time.perf_counter() - t0
            if i >= 3:  # warm-up
                times.append(elapsed)
        median = statistics.median(times)
        rate = 2 * n**3 / median / 1e9
        print(json.dumps({"kernel": "torch.matmul", "shape": f"{n}x{n}x{n}", "median_ms": round(median * 1e3, 4),
                          "rate": round(rate, 2), "unit": "GFLOP/s", "reps": args.reps, "tf32": False,
                          "device": name, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
