"""bench_p_netns.py -- Dask's side of bench_p_netns.lua, on the same
topology: `dask scheduler` in namespace S, one `dask worker --nthreads 1`
in each of A and B (scripts/bench/netns3), the client in S; without and
then with TLS (`tls://`, the CA and certificate of `dlua tls-gen`, both
sides' certificates checked, as dlua's).  Dask's TCP has no
authentication (dlua's always has).  The round trip of one trivial task
(median of N), map + gather of M tasks (best of 3), and an MB-megabyte
bytes value made on one worker and used on the other (best of REPS).
Needs root and `ip netns`; otherwise it says so and exits 0.

    /usr/bin/python3 scripts/bench/bench_p_netns.py  (env N=200 M=2000 MB=100 REPS=3)
"""
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

N = int(os.environ.get("N", "200"))
M = int(os.environ.get("M", "2000"))
MB = int(os.environ.get("MB", "100"))
REPS = int(os.environ.get("REPS", "3"))
HERE = os.path.dirname(os.path.abspath(__file__))


def emit(name, value, unit):
    if isinstance(value, float):
        value = f"{value:.6g}"
    print(f"{name} {value} {unit}", flush=True)


def inc(x):
    return x + 1


def make(n, k):
    return b"x" * (n - 8) + b"%08d" % k


def inner(sf, tag, tls_dir):
    from distributed import Client, wait
    from distributed.security import Security
    sec = None
    if tls_dir:
        sec = Security(tls_ca_file=f"{tls_dir}/ca.pem",
                       tls_client_cert=f"{tls_dir}/cert.pem",
                       tls_client_key=f"{tls_dir}/key.pem",
                       require_encryption=True)
    deadline = time.time() + 60
    while not os.path.exists(sf) and time.time() < deadline:
        time.sleep(0.05)
    client = Client(scheduler_file=sf, security=sec)
    client.wait_for_workers(2, timeout=60)
    for i in range(20):
        assert client.submit(inc, i, pure=False).result() == i + 1
    lat = []
    for i in range(N):
        t0 = time.perf_counter()
        assert client.submit(inc, i, pure=False).result() == i + 1
        lat.append((time.perf_counter() - t0) * 1e6)
    emit(f"netns.{tag}.latency.median", statistics.median(lat), "us")
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        r = client.gather(client.map(inc, range(M), pure=False))
        dt = time.perf_counter() - t0
        assert r[-1] == M
        best = max(best, M / dt)
        del r
    emit(f"netns.{tag}.map_gather", best, "tasks/s")
    ws = sorted(client.scheduler_info()["workers"])
    size = MB * 1000000
    best = 0.0
    for k in range(REPS):
        big = client.submit(make, size, k, workers=[ws[0]], pure=False)
        wait(big)
        t0 = time.perf_counter()
        n = client.submit(len, big, workers=[ws[1]], pure=False).result()
        dt = time.perf_counter() - t0
        assert n == size
        best = max(best, size / dt / 1e9)
        del big
        time.sleep(0.2)
    emit(f"netns.{tag}.transfer_mb{MB}", best, "GB/s")
    client.shutdown()
    client.close()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        inner(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
        return
    import distributed
    print(f"# dask distributed {distributed.__version__}", flush=True)
    if os.geteuid() != 0 or subprocess.call(["ip", "netns", "list"],
                                             stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL) != 0:
        print("# bench p skipped: it needs root and `ip netns`", flush=True)
        return
    tag = str(random.randint(100000, 999999))
    netns3 = os.path.join(HERE, "netns3")
    tmp = tempfile.mkdtemp(prefix="dask-netns-")
    env = dict(os.environ, DASK_TEMPORARY_DIRECTORY=tmp,
               DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="60s")
    dask = shutil.which("dask", path=os.path.dirname(sys.executable)
                        + ":/usr/bin") or "dask"
    dlua = os.environ.get("DLUA") or os.path.join(HERE, "../../build/dlua")
    log = open(os.path.join(tmp, "log"), "w")
    ok = True
    try:
        subprocess.check_call([netns3, "up", tag])
        tls = os.path.join(tmp, "tls")
        subprocess.check_call([dlua, "tls-gen", tls], stderr=subprocess.DEVNULL)
        for mode in ("tcp", "tls"):
            sf = os.path.join(tmp, f"sf-{mode}.json")
            tlsargs = []
            if mode == "tls":
                tlsargs = ["--tls-ca-file", f"{tls}/ca.pem", "--tls-cert",
                           f"{tls}/cert.pem", "--tls-key", f"{tls}/key.pem"]
            proto = ["--protocol", "tls"] if mode == "tls" else []
            procs = [subprocess.Popen(
                ["ip", "netns", "exec", f"dlpS{tag}", dask, "scheduler",
                 "--host", "10.79.0.1", "--port", "0", "--no-dashboard",
                 "--scheduler-file", sf] + proto + tlsargs,
                env=env, stdout=log, stderr=log)]
            for w in ("A", "B"):
                procs.append(subprocess.Popen(
                    ["ip", "netns", "exec", f"dlp{w}{tag}", dask, "worker",
                     "--scheduler-file", sf, "--nthreads", "1", "--no-nanny",
                     "--no-dashboard"] + tlsargs,
                    env=env, stdout=log, stderr=log))
            rc = subprocess.call(["ip", "netns", "exec", f"dlpS{tag}",
                                  sys.executable, os.path.abspath(__file__),
                                  "--inner", sf, mode]
                                 + ([tls] if mode == "tls" else []), env=env)
            for p in procs:
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            if rc != 0:
                ok = False
                break
    finally:
        subprocess.call([netns3, "down", tag])
        if not ok:
            log.flush()
            sys.stderr.write(open(os.path.join(tmp, "log")).read()[-4000:])
        shutil.rmtree(tmp, ignore_errors=True)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
