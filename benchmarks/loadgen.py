"""Load generators: `wrk` with the Lua scripts in benchmarks/lua, or a Python async client.

Both run a list of jobs *at the same time* for a fixed duration (several jobs make the login
storm) and report, per job, completed requests, requests/s, p50/p99 latency and errors
(transport errors plus responses that are not 2xx/3xx, like wrk counts them).

A refresh job is a pool of single-use refresh tokens, one per device session: every request
takes a token nobody sent before and the successor from its response goes back into the
pool, so sessions really rotate. Tokens left at the end stay in `job.tokens` for the next run.

A job with `bodies` sends each of them once, in order (the second-step rows: every body holds
an `mfa_token` or a WebAuthn challenge the service accepts once); a request that finds none
left is counted as starved.

A job with `cookies` sends the next Cookie header of that list with every request, round and
round, each connection (Python) or wrk thread starting at its own offset: `/users/me` as
thousands of users, every token one the service has not verified lately.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.procs import BenchmarkError, Processes

LUA_DIR = Path(__file__).resolve().parent / "lua"
WRK_TIMEOUT_SECONDS = 30


@dataclass
class Job:
    name: str
    base_url: str
    path: str
    connections: int
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    refresh_tokens: list[str] | None = None  # set: a refresh-rotation job
    bodies: list[bytes] | None = None  # set: every request sends the next one, once
    cookies: list[str] | None = None  # set: every request sends the next one, cyclically


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    starved: int = 0  # requests sent without a fresh token or body (pool too small)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "rps": round(self.rps, 2),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "errors": self.errors,
            "starved": self.starved,
        }


def choose_client(requested: str) -> str:
    if requested == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if requested == "wrk" and not shutil.which("wrk"):
        raise BenchmarkError("--client wrk: wrk is not installed (apt-get install wrk)")
    return requested


def run_jobs(
    client: str, jobs: list[Job], duration: float, procs: Processes, threads: int = 1
) -> list[LoadResult]:
    if client == "wrk":
        return _run_wrk(jobs, duration, procs, threads)
    return asyncio.run(_run_python(jobs, duration))


# --------------------------------------------------------------------------- wrk
def _run_wrk(jobs: list[Job], duration: float, procs: Processes, threads: int) -> list[LoadResult]:
    seconds = max(1, math.ceil(duration))  # wrk takes whole seconds
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as scratch:
        started = []
        for index, job in enumerate(jobs):
            job_threads = max(1, min(threads, job.connections))
            env = {**os.environ, "BENCH_WRK_THREADS": str(job_threads)}
            if job.refresh_tokens is not None:
                script = LUA_DIR / "refresh.lua"
                tokens_file = Path(scratch, f"tokens-{index}")
                tokens_file.write_text("".join(f"{token}\n" for token in job.refresh_tokens))
                env["BENCH_TOKENS_FILE"] = str(tokens_file)
                env["BENCH_LEFTOVER_FILE"] = str(Path(scratch, f"leftover-{index}"))
            elif job.cookies is not None:
                script = LUA_DIR / "cookies.lua"
                cookies_file = Path(scratch, f"cookies-{index}")
                cookies_file.write_text("".join(f"{cookie}\n" for cookie in job.cookies))
                env["BENCH_COOKIES_FILE"] = str(cookies_file)
            elif job.bodies is not None:
                script = LUA_DIR / "bodies.lua"
                bodies_file = Path(scratch, f"bodies-{index}")
                bodies_file.write_bytes(b"".join(body + b"\n" for body in job.bodies))
                env["BENCH_BODIES_FILE"] = str(bodies_file)
            else:
                script = LUA_DIR / "static.lua"
                if job.body is not None:
                    body_file = Path(scratch, f"body-{index}")
                    body_file.write_bytes(job.body)
                    env["BENCH_BODY_FILE"] = str(body_file)
                    env["BENCH_METHOD"] = job.method
            args = [
                "wrk",
                f"--threads={job_threads}",
                f"--connections={job.connections}",
                f"--duration={seconds}s",
                f"--timeout={WRK_TIMEOUT_SECONDS}s",
                "--latency",
                f"--script={script}",
            ]
            for name, value in job.headers.items():
                args += ["--header", f"{name}: {value}"]
            args.append(job.base_url + job.path)
            started.append(procs.start(args, env=env, capture=True))

        results = []
        try:
            outputs = []
            for process in started:
                out, err = process.communicate(timeout=seconds + WRK_TIMEOUT_SECONDS + 30)
                outputs.append((process.returncode, out.decode(), err.decode()))
        finally:
            for process in started:
                procs.stop(process)
        for index, (job, (code, out, err)) in enumerate(zip(jobs, outputs, strict=True)):
            if code != 0:
                raise BenchmarkError(f"wrk for {job.name} exited with {code}:\n{out}\n{err}")
            results.append(parse_wrk(out))
            if job.refresh_tokens is not None:
                leftover = Path(scratch, f"leftover-{index}")
                tokens = leftover.read_text().split() if leftover.exists() else []
                job.refresh_tokens[:] = tokens
        return results


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(output: str) -> LoadResult:
    """The BENCH_RESULT line of our Lua `done()`; else wrk's own `--latency` text."""
    for line in output.splitlines():
        if line.startswith("BENCH_RESULT "):
            data = json.loads(line.removeprefix("BENCH_RESULT "))
            errors = data["errors"]
            return LoadResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                errors=sum(errors.values()),
                starved=data.get("starved", 0),
            )
    percentiles = {
        int(match[1]): float(match[2]) * UNITS_MS[match[3]]
        for match in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    }
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if total is None or set(percentiles) != {50, 99}:
        raise BenchmarkError(f"cannot parse wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(non_2xx[1]) if non_2xx else 0
    errors += sum(int(value) for value in socket.groups()) if socket else 0
    return LoadResult(
        requests=int(total[1]),
        seconds=float(total[2]) * UNITS_MS[total[3]] / 1000,
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        errors=errors,
    )


# --------------------------------------------------------------------------- Python client
async def _run_python(jobs: list[Job], duration: float) -> list[LoadResult]:
    return list(await asyncio.gather(*(_python_job(job, duration) for job in jobs)))


async def _python_job(job: Job, duration: float) -> LoadResult:
    import httpx

    limits = httpx.Limits(
        max_connections=job.connections, max_keepalive_connections=job.connections
    )
    latencies: list[float] = []
    errors = starved = 0
    pool = job.refresh_tokens
    fresh = iter(job.bodies) if job.bodies is not None else None

    async with httpx.AsyncClient(
        base_url=job.base_url, headers=job.headers, limits=limits, timeout=WRK_TIMEOUT_SECONDS
    ) as client:

        async def worker(number: int, deadline: float) -> None:
            nonlocal errors, starved
            token: str | None = None
            cookies = job.cookies or []
            position = len(cookies) * number // job.connections
            headers: dict[str, str] = {}
            while time.perf_counter() < deadline:
                if cookies:
                    headers["Cookie"] = cookies[position % len(cookies)]
                    position += 1
                body = job.body
                if fresh is not None:
                    body = next(fresh, None)
                    if body is None:
                        starved += 1
                        return
                if pool is not None:
                    if token is None:
                        if not pool:
                            starved += 1
                            return
                        token = pool.pop()
                    body = json.dumps({"refresh_token": token}).encode()
                began = time.perf_counter()
                try:
                    response = await client.request(
                        job.method, job.path, content=body, headers=headers
                    )
                except httpx.HTTPError:
                    errors += 1
                    token = None  # it may have been consumed; never send it twice
                    await asyncio.sleep(0.01)
                    continue
                latencies.append(time.perf_counter() - began)
                if not 200 <= response.status_code < 400:
                    errors += 1
                if pool is not None:
                    token = (
                        response.json().get("refresh_token")
                        if response.status_code == 200
                        else None
                    )
            if pool is not None and token is not None:
                pool.append(token)

        began = time.perf_counter()
        deadline = began + duration
        await asyncio.gather(*(worker(number, deadline) for number in range(job.connections)))
        seconds = time.perf_counter() - began

    return LoadResult(
        requests=len(latencies),
        seconds=seconds,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        errors=errors,
        starved=starved,
    )


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
