"""Run examples/dask-lecture.ipynb headless with nbclient on the dlua
kernel and check each code cell's outputs, the HTML views included.

usage: python3 run_notebook.py NOTEBOOK     (JUPYTER_PATH must hold the
kernelspec).  Prints "ok N cells"; a failed check raises (status 1).
"""
import math
import re
import sys

import nbformat
from nbclient import NotebookClient


def outputs(cell, kind):
    return [o for o in cell.outputs if o.output_type == kind]


def result(cell):
    rs = outputs(cell, "execute_result")
    assert len(rs) == 1, ("one result", cell.source, cell.outputs)
    return rs[0]["data"]


def stdout(cell):
    return "".join(o.text for o in outputs(cell, "stream")
                   if o.name == "stdout")


def html_has(cell, *words):
    html = result(cell)["text/html"]
    for w in words:
        assert w in html, (w, cell.source, html)


def check_pi(cell):
    bars = outputs(cell, "display_data")
    assert len(bars) == 1 and "8/8" in bars[0]["data"]["text/plain"], \
        ("one progress output, finished", cell.outputs)
    v = float(result(cell)["text/plain"])
    assert abs(v - math.pi) < 0.05, ("pi", v)


def check_spill(cell):
    m = re.search(r"spilled to disk: (\d+) MB", stdout(cell))
    assert m and int(m.group(1)) > 0, ("spilled", cell.outputs)
    html_has(cell, "LocalCluster", "Workers")


CHECKS = [
    lambda c: None,                                      # client
    lambda c: None,                                      # cluster, client
    lambda c: html_has(c, "Client", "Dashboard", 'href="http://',
                       "Workers", "Total memory"),       # client
    lambda c: re.fullmatch(r'"http://127\.0\.0\.1:\d+/status"',
                           result(c)["text/plain"]) or
    (_ for _ in ()).throw(AssertionError(c.outputs)),    # dashboard_link
    lambda c: html_has(c, "LocalCluster", "Workers (2)"),  # cluster
    lambda c: ("<svg" in result(c)["image/svg+xml"] and
               "digraph" in result(c)["text/plain"]) or
    (_ for _ in ()).throw(AssertionError(c.outputs)),    # visualize
    lambda c: result(c)["text/plain"] == "5" or
    (_ for _ in ()).throw(AssertionError(c.outputs)),    # compute
    lambda c: html_has(c, "Future", "finished"),         # future
    lambda c: result(c)["text/plain"] == "{ 1, 4, 9, 16, 25 }" or
    (_ for _ in ()).throw(AssertionError(c.outputs)),    # gather
    check_pi,                                            # Monte Carlo
    lambda c: result(c)["text/plain"] == "160.0" or
    (_ for _ in ()).throw(AssertionError(c.outputs)),    # larger than memory
    check_spill,
    lambda c: not c.outputs or
    (_ for _ in ()).throw(AssertionError(c.outputs)),    # close
]


def main():
    nb = nbformat.read(sys.argv[1], as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="dlua").execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) == len(CHECKS), (len(code), len(CHECKS))
    for cell, check in zip(code, CHECKS):
        assert not outputs(cell, "error"), (cell.source, cell.outputs)
        check(cell)
    print("ok %d cells" % len(code))


if __name__ == "__main__":
    main()
