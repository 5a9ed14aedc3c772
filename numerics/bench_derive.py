"""Wall time of ``python -m featfate_sym.derive`` (every result), cold and warm, against a
bare ``import sympy``, measured side by side in one run.

*cold*: an empty derivation cache (every result derived by SymPy, then stored); *warm*:
the cache that run left (every result read back).  The three commands are run in turn,
``--repeat`` rounds, each a fresh interpreter; the table gives the best and median
seconds and the ratios of the medians to ``import sympy`` (goals: warm <= 3x, cold <=
15x).  Both derive runs must print the same text (checked).  Two more columns give the
median CPU time (user + system) of the command and the processes it waited for (the
cold run's forked workers): on a shared, loaded machine wall times grow with the load,
CPU times much less, so the two columns together tell a slow build from a busy machine;
the 1-minute load average before and after the rounds is printed under the table.

    python numerics/bench_derive.py               # 3 rounds
    python numerics/bench_derive.py --repeat 5
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from featfate_sym import cli

DERIVE = [sys.executable, "-m", "featfate_sym.derive"]
SYMPY = [sys.executable, "-c", "import sympy"]


def _cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command, env, cpu: list[float] | None = None) -> tuple[float, str]:
    before = _cpu()
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    seconds = time.perf_counter() - start
    if cpu is not None:
        cpu.append(_cpu() - before)
    return seconds, proc.stdout


def main(argv=None) -> int:
    parser = cli.Parser(prog="bench_derive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=cli.number("repeat", lower=1, upper=50, integer=True), default=3,
                        help="rounds (default 3)")
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {"import sympy": [], "derive, warm": [], "derive, cold": []}
    cpu: dict[str, list[float]] = {name: [] for name in times}
    outputs = set()
    load_before = os.getloadavg()[0]
    for round_ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="featfate-bench-cache-") as folder:
            env = {**os.environ, "FEATFATE_CACHE": folder}
            seconds, out = _timed(DERIVE, env, cpu["derive, cold"])  # cold: the folder is empty
            times["derive, cold"].append(seconds)
            outputs.add(out)
            times["import sympy"].append(_timed(SYMPY, env, cpu["import sympy"])[0])
            seconds, out = _timed(DERIVE, env, cpu["derive, warm"])  # warm: what the cold run stored
            times["derive, warm"].append(seconds)
            outputs.add(out)
        print(f"round {round_ + 1}/{args.repeat} done", file=sys.stderr, flush=True)
    if len(outputs) != 1:
        print("bench_derive: cold and warm runs printed different text", file=sys.stderr)
        return 1
    base = statistics.median(times["import sympy"])
    base_cpu = statistics.median(cpu["import sympy"])
    # the wall-time columns last: best, median and ratio are the row's last three numbers
    print(f"{'command':<16} {'median CPU s':>13} {'x CPU':>6} {'best s':>8} {'median s':>9} {'x import sympy':>15}")
    for name, values in times.items():
        median, median_cpu = statistics.median(values), statistics.median(cpu[name])
        print(f"{name:<16} {median_cpu:>13.2f} {median_cpu / base_cpu:>6.1f} {min(values):>8.2f} {median:>9.2f}"
              f" {median / base:>15.1f}")
    print(f"load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
