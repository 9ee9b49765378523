#!/usr/bin/python3
"""Make the dlua-vs-Dask markdown table from the metric files of one run.

  table.py DLUA_FILE DASK_DEFAULT_FILE DASK_SATINF_FILE

Each file holds `metric value unit` lines (other lines are ignored); Dask's
sat=inf metric names carry '.sat_inf', which is dropped for pairing.
Ratios are "dlua better by N x": Dask/dlua for times, dlua/Dask for rates.
"""
import re
import sys


def failures(path):
    """{bench letter: exit status} of the dlua benches that failed: run-all
    writes '<label>.FAILED rc=N' for them (label 'dlua <letter> <script>')"""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                m = re.match(r"dlua (\w+) .*\.FAILED rc=(\d+)", line)
                if m:
                    out[m.group(1)] = int(m.group(2))
    except OSError:
        pass
    return out


def load(path, strip_sat=False):
    vals = {}
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) != 3 or line.startswith(("#", "=")):
                    continue
                try:
                    v = float(p[1])
                except ValueError:
                    continue
                name = p[0].replace(".sat_inf", "") if strip_sat else p[0]
                vals[name] = (v, p[2])
    except OSError:
        pass
    return vals


dl = load(sys.argv[1])
dd = load(sys.argv[2])
ds = load(sys.argv[3], strip_sat=True)
failed = failures(sys.argv[1])


def get(d, pat):
    """value of the first metric matching the regex pat (full match)"""
    for k, v in d.items():
        if re.fullmatch(pat, k):
            return v[0], k
    return None, None


def fmt(v, unit=""):
    if v is None:
        return "—"
    if abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    elif abs(v) >= 0.1:
        s = f"{v:.3g}"
    else:
        s = f"{v:.3g}"
    return f"{s} {unit}".strip()


def ratio(a, b, lower_better):
    if a is None or b is None or a == 0 or b == 0:
        return None
    return b / a if lower_better else a / b


def rfmt(r):
    if r is None:
        return "—"
    return f"{r:,.0f}x" if r >= 100 else f"{r:.3g}x"


rows = []


def row(label, pat, unit, lower_better, target=None, check=None, dpat=None,
        scale=1.0, note=""):
    """target: text; check(dlua, dask_default, dask_satinf) -> bool/None"""
    a, ka = get(dl, pat)
    b, _ = get(dd, dpat or pat)
    c, _ = get(ds, dpat or pat)
    a = a * scale if a is not None else None
    b = b * scale if b is not None else None
    c = c * scale if c is not None else None
    letter = label.split()[0]
    if letter in failed:             # the bench broke: no figure, **no**
        rows.append((label + (f" ({note})" if note else ""),
                     f"failed (exit {failed[letter]})", fmt(b, unit), fmt(c, unit),
                     "—", target or "", "**no**"))
        return
    if a is None and b is None and c is None:
        return                       # workload not in this run
    rb, rc = ratio(a, b, lower_better), ratio(a, c, lower_better)
    r = rfmt(rb)
    if rc is not None:
        r += f" (sat=inf: {rfmt(rc)})"
    met = "—"
    if check and a is not None:
        res = check(a, b, c, rb, rc)
        met = "—" if res is None else ("**yes**" if res else "**no**")
    elif check:
        met = "**no**"               # dlua's figure is missing
    rows.append((label + (f" ({note})" if note else ""), fmt(a, unit), fmt(b, unit),
                 fmt(c, unit), r if a is not None else "not run", target or "", met))


def best_ratio(rb, rc):
    xs = [x for x in (rb, rc) if x is not None]
    return min(xs) if xs else None   # vs Dask's best = the smallest ratio


def at_least(n):
    return lambda a, b, c, rb, rc: (None if best_ratio(rb, rc) is None
                                    else best_ratio(rb, rc) >= n)


# (a) start + close
for src in (dl, dd):
    s, _ = get(src, r"cluster_start\.start_median")
    cl, _ = get(src, r"cluster_start\.close_median")
    if s is not None and cl is not None:
        src["cluster_start.start_plus_close_median"] = (s + cl, "s")
row("a cluster start + close, median", r"cluster_start\.start_plus_close_median", "ms", True,
    "≤ 1/50 of Dask", at_least(50), scale=1e3)
row("a cluster start + one task + close, median (in a running process)",
    r"cluster_start\.start_roundtrip_close_median", "ms", True, "≤ 3 ms (#12)",
    lambda a, b, c, rb, rc: a <= 3.0, dpat=r"^$", scale=1e3)
row("a whole process: start + close one-liner", r"cluster_start\.whole_process_oneliner_median",
    "ms", True, scale=1e3)
row("a whole process: start + one task + close one-liner",
    r"cluster_start\.whole_process_one_task_median", "ms", True, dpat=r"^$", scale=1e3)
row("a whole process: require \"dlua\" alone (Dask: import distributed)",
    r"cluster_start\.import_dlua_process_median", "ms", True,
    dpat=r"cluster_start\.import_dask_distributed_process_median", scale=1e3)
row("b round trip submit→result, median", r"latency\.median", "µs", True,
    "≤ 1/50 of Dask's median; ≤ 30 µs (#12)",
    lambda a, b, c, rb, rc: a <= 30 and (rb is None or rb >= 50))
row("b round trip, p99", r"latency\.p99", "µs", True, "≤ 60 µs (#12)",
    lambda a, b, c, rb, rc: a <= 60)
row("b round trip after 25 ms idle, median", r"latency\.spaced_median", "µs", True)
row("c map+gather 10,000 tasks", r"throughput_futures\.n10000\.rate", "tasks/s", False,
    "≥ 50x Dask's best; ≥ 400k tasks/s (#12)",
    lambda a, b, c, rb, rc: a >= 400000 and at_least(50)(a, b, c, rb, rc) is not False)
row("c map+gather 10,000 tasks, the first run after the start (dlua; Dask: its one run)",
    r"throughput_futures\.n10000\.rate_first", "tasks/s", False,
    dpat=r"throughput_futures\.n10000\.rate")
row("c map+gather 50,000 tasks", r"throughput_futures\.n50000\.rate", "tasks/s", False,
    "≥ 50x Dask's best", at_least(50))
row("d delayed 10,000 incs + tree sum", r"throughput_delayed\.n10000\.rate", "tasks/s", False,
    "≥ 50x Dask's best", at_least(50))
row("e 2,000-task chain, delayed, per task", r"chain\.delayed\.n2000\.per_task", "µs", True,
    "≤ 1/50 of Dask", at_least(50), note="dlua: optimize=false")
row("e 2,000-task chain, delayed fused (dlua default), per task",
    r"chain\.delayed_fused\.n2000\.per_task", "µs", True, dpat=r"chain\.delayed\.n2000\.per_task")
row("e 2,000-task chain, futures, per task", r"chain\.futures\.n2000\.per_task", "µs", True,
    "≤ 1/50 of Dask", at_least(50))
row("f Monte Carlo pi 8 tasks, speedup over serial", r"cpu_parallel\.speedup", "x", False,
    "≥ 1.9x speedup", lambda a, b, c, rb, rc: a >= 1.9)
row("f Monte Carlo, serial wall (same loop)", r"cpu_parallel\.serial_wall", "s", True)
row("g 100 MB to the other worker", r"transfer\.bytes_100MB\.rate_median", "MB/s", False,
    "≥ 2x Dask's rate", lambda a, b, c, rb, rc: None if rb is None else rb >= 2,
    note="dlua: worker B copies the producer's block out of it, process_vm_readv; checksum checked")
row("g tiny dependency on the other worker", r"transfer\.tiny_dep_roundtrip_median", "ms", True)


def h_check(a, b, c, rb, rc):
    if rb is None and rc is None:
        return None
    return (rb is None or rb >= 100) and (rc is None or rc >= 20)


dn = get(dd, r"scheduler_scale\.rawdict\.n(\d+)\.rate")[1] or get(ds, r"scheduler_scale\.rawdict\.n(\d+)\.rate")[1]
dN = re.search(r"\.n(\d+)\.", dn).group(1) if dn else "?"
for dmode, mode in (("rawdict", "futures"), ("delayed", "delayed")):
    row(f"h 100k-task graph via {mode}, tasks/s (Dask: {dmode}, N={dN})",
        rf"scheduler_scale\.{mode}\.n100000\.rate", "tasks/s", False,
        "≥ 100x Dask default, ≥ 20x sat=inf", h_check,
        dpat=rf"scheduler_scale\.{dmode}\.n\d+\.rate")
    # peak scheduler memory per task
    for src, m in ((dd, dmode), (ds, dmode)):
        for k in list(src):
            mm = re.fullmatch(rf"scheduler_scale\.{m}\.n(\d+)\.scheduler_peak_rss", k)
            if mm:
                n = mm.group(1)
                before = src.get(f"scheduler_scale.{m}.n{n}.scheduler_rss_before")
                tasks = src.get(f"scheduler_scale.{m}.n{n}.total_tasks")
                if before and tasks:
                    src[f"scheduler_scale.{m}.n{n}.peak_rss_growth_per_task"] = (
                        (src[k][0] - before[0]) * 1048576 / tasks[0], "B")
    row(f"h 100k graph via {mode}: scheduler peak RSS growth per task",
        rf"scheduler_scale\.{mode}\.n100000\.peak_rss_growth_per_task", "B", True,
        dpat=rf"scheduler_scale\.{dmode}\.n\d+\.peak_rss_growth_per_task",
        note="dlua: whole client process")
    row(f"h 1M-task graph via {mode}, tasks/s (dlua only)",
        rf"scheduler_scale\.{mode}\.n1000000\.rate", "tasks/s", False,
        dpat=r"^$")
    row(f"h 1M-task graph via {mode}, peak RSS growth per task (dlua only)",
        rf"scheduler_scale\.{mode}\.n1000000\.peak_rss_growth_per_task", "B", True,
        *(("≤ 300 B (#12)", lambda a, b, c, rb, rc: a <= 300) if mode == "futures"
          else (None, None)), dpat=r"^$")
row("i 800 MB of results on 2 × 300 MB workers: completed",
    r"memory_spill\.completed", "", False, "completes",
    lambda a, b, c, rb, rc: a == 1)
row("i 800 MB of results on 2 × 300 MB workers: wall", r"memory_spill\.total_wall",
    "s", True)
row("i dlua's wall / writing and reading the same bytes to disk",
    r"memory_spill\.ratio_to_disk", "x", True, "≤ 2x",
    lambda a, b, c, rb, rc: a is not None and a <= 2, dpat=r"^$")
row("i the larger-than-memory example (3 GB on 2 × 512 MiB workers): wall",
    r"memory_spill\.example_wall", "s", True, dpat=r"^$")
row("i the example's wall / writing and reading the same bytes to disk",
    r"memory_spill\.example_ratio_to_disk", "x", True, "≤ 2x",
    lambda a, b, c, rb, rc: a is not None and a <= 2, dpat=r"^$")
row("j worker SIGKILLed midway: all 20 results", r"fault\.recovered", "", False,
    "recovers", lambda a, b, c, rb, rc: a == 1)
row("j wall with the kill (20 × 0.5 s tasks)", r"fault\.wall_with_kill", "s", True)
row("j death noticed after kill", r"fault\.death_detected_after_kill", "ms", True)
row("k array: Monte Carlo pi, uniform pairs in chunks", r"array\.mc_pi\.dlua_wall", "s",
    True, "≥ 5x Dask (#14)", at_least(5), dpat=r"array\.mc_pi\.dask_wall")
row("k array: (x + x.T) mean over an axis, then sum", r"array\.transpose_mean\.dlua_wall",
    "s", True, "≥ 3x Dask (#14)", at_least(3), dpat=r"array\.transpose_mean\.dask_wall")
row("k array: x @ x.T, blockwise", r"array\.matmul\.dlua_wall", "s", True,
    "≥ 2x Dask (#14)", at_least(2), dpat=r"array\.matmul\.dask_wall")
row("k array: x @ x.T, NumPy in one process (2 BLAS threads)", r"^$", "s", True,
    dpat=r"array\.matmul\.numpy_wall")
row("k array: x @ x.T, dlua GFLOP/s", r"array\.matmul\.dlua_gflops", "GFLOP/s", False,
    dpat=r"^$")
row("k array: sum of a persisted vector of 3x the cluster's memory limit (mostly spilled)",
    r"array\.spilled_sum\.dlua_wall", "s", True, "completes, same sum (#14)",
    lambda a, b, c, rb, rc: True, dpat=r"^$")
row("k array: the same sum on a cluster with room for it (in memory)",
    r"array\.spilled_sum\.in_memory_wall", "s", True, dpat=r"^$")

row("l bag word frequencies + top 10 (~70 MB): wall", r"bag\.wordfreq\.wall", "s", True,
    "≥ 10x Dask (#15)", at_least(10), dpat=r"bag\.wordfreq\.dask_wall")
row("l the same, against a serial Python loop", r"bag\.wordfreq\.wall", "s", True,
    "≥ 3x serial Python (#15)", at_least(3), dpat=r"bag\.wordfreq\.serial_python_wall",
    note="Dask column: the Python loop")
row("l the same count through foldby: wall", r"bag\.wordfreq\.foldby_wall", "s", True,
    dpat=r"^$")
row("l throughput", r"bag\.wordfreq\.MB_per_s", "MB/s", False,
    dpat=r"bag\.wordfreq\.dask_MB_per_s")
row("m CSV group-by on 2 workers (8 files, 4 M rows): wall", r"dataframe\.groupby\.wall", "s",
    True, "≥ 3x Dask (#16)", at_least(3), dpat=r"dataframe\.groupby\.dask_wall")
row("m the same group-by in one process, dlua.frame vs pandas", r"dataframe\.groupby\.frame_wall",
    "s", True, "≥ 2x pandas (#16)", at_least(2), dpat=r"dataframe\.groupby\.pandas_wall",
    note="Dask column: pandas")
row("m merge with a 1,000-row table on key, rows counted", r"dataframe\.merge\.wall", "s",
    True, dpat=r"dataframe\.merge\.dask_wall", note="Dask's side: scripts/bench/bench_m_shuffle.py")
row("m sort_values of all rows by x through the workers, rows counted",
    r"dataframe\.sort\.wall", "s", True, dpat=r"dataframe\.sort\.dask_wall")
row("m group-by throughput on 2 workers", r"dataframe\.groupby\.MB_per_s", "MB/s", False,
    dpat=r"dataframe\.groupby\.dask_MB_per_s")
row("m CSV read, per worker", r"dataframe\.read\.MB_per_s_per_worker", "MB/s", False,
    dpat=r"^$")
row("m cluster vs in-process results, largest relative difference",
    r"dataframe\.groupby\.maxdiff", "", True, "≤ 1e-9 (#16)",
    lambda a, b, c, rb, rc: a <= 1e-9, dpat=r"^$")
row("n recursive fib by tasks (2 one-slot workers): per task", r"coord\.fib\.n\d+\.per_task",
    "us", True, "≥ 50x Dask (#18)", at_least(50))
row("n Queue put→get round trip between tasks, median", r"coord\.queue_rtt\.median", "us",
    True, "≤ 100 µs (#18)", lambda a, b, c, rb, rc: a <= 100)
row("n Semaphore, 2 leases, 4 tasks contending", r"coord\.sem\.acq_per_s", "acq/s", False)
row("n Semaphore: most holders at once", r"coord\.sem\.max_holders", "", True,
    "≤ 2, never overbooked", lambda a, b, c, rb, rc: a <= 2)

# (p) past one machine: scheduler and 2 workers in 3 network namespaces
# joined by veth pairs, TCP with the token's authentication (#17)
def both(bar, times):
    return lambda a, b, c, rb, rc: (None if rb is None
                                    else bool(bar(a)) and rb >= times)


row("p map+gather 10,000 tasks, 3 namespaces, TCP", r"netns\.tcp\.map_gather",
    "tasks/s", False, "≥ 150,000/s and ≥ 40x Dask (#17)",
    both(lambda a: a >= 150000, 40))
row("p round trip submit→result, 3 namespaces, TCP, median",
    r"netns\.tcp\.latency\.median", "µs", True, "≤ 100 µs (#17)",
    lambda a, b, c, rb, rc: a <= 100)
row("p 100 MB value worker to worker, 3 namespaces, TCP",
    r"netns\.tcp\.transfer_mb\d+", "GB/s", False, "≥ 1.5 GB/s and ≥ 2x Dask (#17)",
    both(lambda a: a >= 1.5, 2))
row("p 100 MB value worker to worker, 3 namespaces, TLS",
    r"netns\.tls\.transfer_mb\d+", "GB/s", False, "≥ 0.8 GB/s and ≥ 2x Dask (#17)",
    both(lambda a: a >= 0.8, 2))
row("p map+gather 10,000 tasks, 3 namespaces, TLS", r"netns\.tls\.map_gather",
    "tasks/s", False)
row("p round trip, 3 namespaces, TLS, median", r"netns\.tls\.latency\.median",
    "µs", True)

print("| workload | dlua | Dask (default) | Dask (sat=inf) | dlua better by | target | met |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")

# The summary sentence, from the table itself (never written by hand).
targets = [r for r in rows if r[5]]
met = [r for r in targets if r[6] == "**yes**"]
missed = [r[0] for r in targets if r[6] == "**no**"]
unknown = [r[0] for r in targets if r[6] not in ("**yes**", "**no**")]
print()
if not targets:
    print("No target could be checked in this run (no row has both sides).")
elif len(met) == len(targets):
    print(f"Every target is met in this run ({len(met)} of {len(targets)}).")
else:
    s = f"{len(met)} of {len(targets)} targets are met in this run"
    if missed:
        s += "; not met: " + "; ".join(missed)
    if unknown:
        s += "; not measured (no Dask figure): " + "; ".join(unknown)
    print(s + ".")
if failed:
    print("Benches that failed: " + ", ".join(sorted(failed)) + ".")
