"""bench_m_shuffle.py -- Dask's side of bench m's merge and sort (issue 16).

The files of bench m (FILES CSV files, ROWS rows in all; columns id:int,
key:string of 1,000 values "k0".."k999", x:float in [0, 1), y:float),
then on Dask's 2-worker cluster (2 processes x 1 thread), best of 2:
  dataframe.merge.dask_wall  read_csv -> merge with a 1,000-row pandas
                             frame (key, w) on key -> len()
  dataframe.sort.dask_wall   read_csv -> sort_values("x") -> len()
as scripts/bench/bench_m_dataframe.lua does with dlua.

    /usr/bin/python3 scripts/bench/bench_m_shuffle.py     (env FILES, ROWS)
"""
import os
import shutil
import sys
import tempfile
import time

# Workers re-import this file: they find the folder in the environment.
_MADE = "DASK_TEMPORARY_DIRECTORY" not in os.environ
if _MADE:
    os.environ["DASK_TEMPORARY_DIRECTORY"] = tempfile.mkdtemp(prefix="dask-shuffle-")

FILES = int(os.environ.get("FILES", "8"))
ROWS = int(os.environ.get("ROWS", "4000000"))


def emit(name, value, unit):
    if isinstance(value, float):
        value = f"{value:.6g}"
    print(f"{name} {value} {unit}", flush=True)


def make_files(d):
    import numpy as np
    import pandas as pd
    rng = np.random.default_rng(7)
    per = ROWS // FILES
    for f in range(FILES):
        pd.DataFrame({"id": np.arange(f * per, (f + 1) * per),
                      "key": np.char.add("k", rng.integers(0, 1000, per).astype(str)),
                      "x": rng.random(per), "y": rng.standard_normal(per)}
                     ).to_csv(os.path.join(d, "part-%02d.csv" % f), index=False)
    return per * FILES


def main():
    import pandas as pd
    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster
    d = tempfile.mkdtemp(prefix="bench-m-shuffle-")
    try:
        n = make_files(d)
        small = pd.DataFrame({"key": ["k%d" % i for i in range(1000)],
                              "w": [i * 0.5 for i in range(1000)]})
        pat = os.path.join(d, "part-*.csv")
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None,
                               local_directory=os.environ["DASK_TEMPORARY_DIRECTORY"])
        client = Client(cluster)
        try:
            client.wait_for_workers(2)
            tm, ts = [], []
            for _ in range(2):
                t0 = time.perf_counter()
                m = len(dd.read_csv(pat).merge(small, on="key"))
                tm.append(time.perf_counter() - t0)
                assert m == n, (m, n)
                t0 = time.perf_counter()
                s = len(dd.read_csv(pat).sort_values("x"))
                ts.append(time.perf_counter() - t0)
                assert s == n, (s, n)
        finally:
            client.close()
            cluster.close()
        emit("dataframe.merge.dask_wall", min(tm), "s")
        emit("dataframe.sort.dask_wall", min(ts), "s")
    finally:
        shutil.rmtree(d, ignore_errors=True)
        if _MADE:
            shutil.rmtree(os.environ["DASK_TEMPORARY_DIRECTORY"], ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
