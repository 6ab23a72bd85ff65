"""The login ceiling: argon2id verifications per second on every core, nothing else running.

One process per core verifies the same password in a loop for a fixed time, with the
parameters the service uses. Prints one JSON line. Run by benchmarks/run.py as

    python -m benchmarks.argon2_ceiling --seconds 5 --time-cost 3 --memory-cost 65536 \
        --parallelism 4
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor


def verify_loop(seconds: float, time_cost: int, memory_cost: int, parallelism: int) -> list[float]:
    """Durations of the verifications that fit into `seconds` (at least one)."""
    from argon2 import PasswordHasher, Type

    hasher = PasswordHasher(
        time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
    )
    password = "correct horse battery staple, benchmark edition"  # noqa: S105
    password_hash = hasher.hash(password)
    durations: list[float] = []
    deadline = time.perf_counter() + seconds
    while not durations or time.perf_counter() < deadline:
        began = time.perf_counter()
        hasher.verify(password_hash, password)
        durations.append(time.perf_counter() - began)
    return durations


def measure(
    seconds: float, time_cost: int, memory_cost: int, parallelism: int, processes: int
) -> dict[str, float | int]:
    with ProcessPoolExecutor(max_workers=processes) as pool:
        began = time.perf_counter()
        futures = [
            pool.submit(verify_loop, seconds, time_cost, memory_cost, parallelism)
            for _ in range(processes)
        ]
        runs = [future.result() for future in futures]
        elapsed = time.perf_counter() - began
    durations = sorted(d for run in runs for d in run)
    # Each process stops at its first verification past the deadline: count by busy time.
    busy = max(sum(run) for run in runs)
    return {
        "verifies": len(durations),
        "seconds": round(elapsed, 3),
        "rate": round(sum(len(run) / sum(run) for run in runs), 2),
        "per_process_rate": [round(len(run) / sum(run), 2) for run in runs],
        "verify_p50_ms": round(durations[len(durations) // 2] * 1000, 2),
        "busy_seconds": round(busy, 3),
        "processes": processes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--time-cost", type=int, default=3)
    parser.add_argument("--memory-cost", type=int, default=65536)
    parser.add_argument("--parallelism", type=int, default=4)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    result = measure(
        args.seconds, args.time_cost, args.memory_cost, args.parallelism, args.processes
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
