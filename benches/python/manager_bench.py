#!/usr/bin/env python3
"""Python's Manager() proxies, one process: microseconds per call.

Usage:  python3 manager_bench.py [N]      (N calls per sample, default 20000)

Prints one line per operation: the median of 5 samples, and the smallest and largest.
These are the PY_*_US constants of benches/manager.rs (dict get / set, list append), and
the "Python" column of the README's Manager table.
"""

import multiprocessing as mp
import statistics
import sys
import time


def per_call_us(op, n, samples=5):
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        for i in range(n):
            op(i)
        times.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(times), min(times), max(times)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    with mp.Manager() as m:
        d, l, ns = m.dict(), m.list(), m.Namespace()
        ns.x = 0
        for i in range(100):
            d[i] = i
        ops = [
            ("dict_get", lambda i: d.get(i % 100)),
            ("dict_set", lambda i: d.__setitem__(i % 100, i)),
            ("list_append", lambda i: l.append(i)),
            ("ns_set", lambda i: setattr(ns, "x", i)),
        ]
        for name, op in ops:
            med, lo, hi = per_call_us(op, n)
            print(f"py.manager_{name}: median {med:.1f} us/call (min {lo:.1f}, max {hi:.1f})")


if __name__ == "__main__":
    main()
