"""bench_n_coord.py -- Dask's side of bench_n_coord.lua (issue 18).

Same metrics, same shapes: recursive fib(N) by tasks with worker_client
(which secedes: without it the one-slot workers deadlock), a Queue round
trip between two tasks on different workers, and 4 tasks contending 1,000
times for a Semaphore of 2 leases.  Small sizes by default (Dask takes
milliseconds per task): N = 14, M = 200.

    /usr/bin/python3 scripts/bench/bench_n_coord.py     (env N, M)
"""
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("DASK_TEMPORARY_DIRECTORY",
                      tempfile.mkdtemp(prefix="dask-coord-"))

from dask.distributed import (Client, LocalCluster, Queue, Semaphore,
                              worker_client)

N = int(os.environ.get("N", "14"))
M = int(os.environ.get("M", "200"))


def emit(name, value, unit):
    if isinstance(value, float):
        value = f"{value:.6g}"
    print(f"{name} {value} {unit}", flush=True)


def fib(n):
    if n < 2:
        return n
    with worker_client() as c:
        a, b = c.submit(fib, n - 1, pure=False), c.submit(fib, n - 2,
                                                          pure=False)
        x, y = c.gather([a, b])
    return x + y


def fib_tasks(n):
    a, b = 1, 1
    for _ in range(2, n + 1):
        a, b = b, a + b + 1
    return 1 if n == 0 else b


def echo(m):
    a, b = Queue("bench-ping"), Queue("bench-pong")
    for _ in range(m + 1):
        b.put(a.get())
    return True


def pinger(m):
    a, b = Queue("bench-ping"), Queue("bench-pong")
    a.put(0)
    b.get()
    rtts = []
    for i in range(m):
        t0 = time.perf_counter()
        a.put(i)
        assert b.get() == i
        rtts.append(time.perf_counter() - t0)
    return rtts


def contend(n):
    s = Semaphore(max_leases=2, name="bench-sem")
    spans = []
    for _ in range(n):
        s.acquire()
        a = time.monotonic()
        b = time.monotonic()
        s.release()
        spans.append((a, b))
    return spans


def main():
    import dask
    print(f"# dask {dask.__version__}", flush=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cl, Client(cl) as client:
        assert client.submit(fib, 5, pure=False).result() == 5
        t0 = time.perf_counter()
        v = client.submit(fib, N, pure=False).result()
        wall = time.perf_counter() - t0
        a, b = 0, 1
        for _ in range(N):
            a, b = b, a + b
        assert v == a, v
        tasks = fib_tasks(N)
        emit(f"coord.fib.n{N}.wall", wall, "s")
        emit(f"coord.fib.n{N}.tasks", tasks, "tasks")
        emit(f"coord.fib.n{N}.per_task", wall / tasks * 1e6, "us")

        ws = sorted(client.scheduler_info()["workers"])
        e = client.submit(echo, M, workers=[ws[1]], pure=False)
        p = client.submit(pinger, M, workers=[ws[0]], pure=False)
        rtts = sorted(p.result())
        assert e.result()
        emit("coord.queue_rtt.median", statistics.median(rtts) * 1e6, "us")
        emit("coord.queue_rtt.p90", rtts[int(len(rtts) * 0.9)] * 1e6, "us")

        t0 = time.perf_counter()
        futs = [client.submit(contend, 250, pure=False) for _ in range(4)]
        allspans = client.gather(futs)
        wall = time.perf_counter() - t0
        ev = []
        for spans in allspans:
            for a, b in spans:
                ev.append((a, 1))
                ev.append((b, -1))
        ev.sort(key=lambda x: (x[0], x[1]))
        cur = most = 0
        for _, d in ev:
            cur += d
            most = max(most, cur)
        assert most <= 2, most
        emit("coord.sem.acq_per_s", 1000 / wall, "acq/s")
        emit("coord.sem.max_holders", most, "holders")


if __name__ == "__main__":
    sys.exit(main())
