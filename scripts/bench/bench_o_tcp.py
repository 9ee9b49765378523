"""bench_o_tcp.py -- Dask's side of bench_o_tcp.lua: `dask scheduler` and
`dask worker --nworkers 2 --nthreads 1` as processes over TCP on the
loopback, a Client(address) in this process; the round trip of one
trivial task (median of N) and map + gather throughput of M tasks (best
of 3).  Dask's TCP has no authentication by default (dlua's always has).

    /usr/bin/python3 scripts/bench/bench_o_tcp.py     (env N = 200, M = 2000)
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from distributed import Client

N = int(os.environ.get("N", "200"))
M = int(os.environ.get("M", "2000"))
WARMUP = 20


def emit(name, value, unit):
    if isinstance(value, float):
        value = f"{value:.6g}"
    print(f"{name} {value} {unit}", flush=True)


def inc(x):
    return x + 1


def main():
    import distributed
    print(f"# dask distributed {distributed.__version__}", flush=True)
    tmp = tempfile.mkdtemp(prefix="dask-tcp-")
    sf = os.path.join(tmp, "sf.json")
    env = dict(os.environ, DASK_TEMPORARY_DIRECTORY=tmp)
    bindir = os.path.dirname(sys.executable)
    dask = shutil.which("dask", path=bindir + ":/usr/bin") or "dask"
    log = open(os.path.join(tmp, "log"), "w")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--dashboard-address", ":0",
                               "--scheduler-file", sf],
                              env=env, stdout=log, stderr=log)]
    procs.append(subprocess.Popen([dask, "worker", "--scheduler-file", sf,
                                   "--nworkers", "2", "--nthreads", "1",
                                   "--no-dashboard"],
                                  env=env, stdout=log, stderr=log))
    try:
        deadline = time.time() + 60
        while not os.path.exists(sf) and time.time() < deadline:
            time.sleep(0.05)
        client = Client(scheduler_file=sf)
        client.wait_for_workers(2, timeout=60)
        for i in range(WARMUP):
            assert client.submit(inc, i, pure=False).result() == i + 1
        lat = []
        for i in range(N):
            t0 = time.perf_counter()
            assert client.submit(inc, i, pure=False).result() == i + 1
            lat.append((time.perf_counter() - t0) * 1e6)
        emit("tcp.latency.median", statistics.median(lat), "us")
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            r = client.gather(client.map(inc, range(M), pure=False))
            dt = time.perf_counter() - t0
            assert r[-1] == M
            best = max(best, M / dt)
            del r
        emit("tcp.map_gather", best, "tasks/s")
        client.shutdown()
        client.close()
    finally:
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
