#!/usr/bin/python3
"""bench_kernel.py -- the Jupyter kernel's speed, dlua beside ipykernel.

usage: scripts/bench/bench_kernel.py [N]          (N round trips, default 500)
       KERNELS=dlua scripts/bench/bench_kernel.py  (only dlua's kernel)

For each kernel (dlua's, installed here into a temporary prefix from
build/dlua; Python's ipykernel when python3-ipykernel is installed):
  start   seconds from starting the kernel process (jupyter_client's
          KernelManager) to the reply of the first executed cell;
  reply   an execute_request of `1+1` to its execute_reply (shell);
  idle    the same to the idle status on IOPub, after the result: what a
          notebook waits for;
  cpu     the kernel process's CPU time (user + system, all threads) per
          execute: what it costs whatever the machine's load.
Round trips go through jupyter_client's Session (signing) on plain pyzmq
sockets, so the client's own overhead is small and the same for both
kernels.  Medians and 90th percentiles are printed, one line per metric:
  kernel=dlua metric=reply_ms median=0.21 p90=0.30 n=500
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

import zmq
from jupyter_client.manager import KernelManager

N = int(sys.argv[1]) if len(sys.argv) > 1 else 500
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def execute_msg(session, code):
    return session.msg("execute_request", {
        "code": code, "silent": False, "store_history": True,
        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})


def cpu_seconds(pid):
    """User + system CPU time of process pid (all its threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench(name):
    km = KernelManager(kernel_name=name)
    t0 = time.perf_counter()
    km.start_kernel()
    ctx = zmq.Context()
    info = km.get_connection_info(session=False)
    session = km.session
    url = "%s://%s:%%d" % (info["transport"], info["ip"])
    shell = ctx.socket(zmq.DEALER)
    shell.connect(url % info["shell_port"])
    iopub = ctx.socket(zmq.SUB)
    iopub.setsockopt(zmq.SUBSCRIBE, b"")
    iopub.connect(url % info["iopub_port"])

    def round_trip(code):
        """(seconds to the reply, seconds to idle)."""
        msg = execute_msg(session, code)
        mid = msg["header"]["msg_id"]
        start = time.perf_counter()
        session.send(shell, msg)
        reply_t = idle_t = None
        poller = zmq.Poller()
        poller.register(shell, zmq.POLLIN)
        poller.register(iopub, zmq.POLLIN)
        while reply_t is None or idle_t is None:
            socks = dict(poller.poll(30000))
            if not socks:
                raise RuntimeError("%s: no %s in 30 s" % (
                    name, "reply" if reply_t is None else "idle status"))
            now = time.perf_counter()
            if shell in socks:
                _, m = session.recv(shell)
                if m["parent_header"].get("msg_id") == mid:
                    reply_t = now - start
            if iopub in socks:
                _, m = session.recv(iopub)
                if (m["parent_header"].get("msg_id") == mid
                        and m["msg_type"] == "status"
                        and m["content"]["execution_state"] == "idle"):
                    idle_t = now - start
        return reply_t, idle_t

    # The first cell: the kernel may not be listening yet (the IOPub
    # subscription also takes a moment), so retry until one is answered.
    while True:
        try:
            first = execute_msg(session, "1+1")
            session.send(shell, first)
            if shell.poll(200):
                session.recv(shell)
                break
        except zmq.ZMQError:
            pass
    start_s = time.perf_counter() - t0
    # IOPub drops what is published before our subscription reached the
    # kernel: ask for kernel_info until its status messages arrive (as
    # jupyter_client's wait_for_ready does), then drain.
    while not iopub.poll(0):
        session.send(shell, session.msg("kernel_info_request", {}))
        iopub.poll(100)
    while iopub.poll(200):
        session.recv(iopub)
    while shell.poll(0):
        session.recv(shell)
    for _ in range(50):
        round_trip("1+1")
    reply, idle = [], []
    pid = km.provisioner.process.pid
    cpu0 = cpu_seconds(pid)
    for _ in range(N):
        r, i = round_trip("1+1")
        reply.append(r * 1000)
        idle.append(i * 1000)
    cpu = (cpu_seconds(pid) - cpu0) / N * 1000
    shell.close(0)
    iopub.close(0)
    ctx.term()
    km.shutdown_kernel(now=False)

    def line(metric, xs):
        xs = sorted(xs)
        print("kernel=%s metric=%s median=%.3f p90=%.3f n=%d" % (
            name, metric, statistics.median(xs), xs[int(len(xs) * 0.9)],
            len(xs)), flush=True)
    print("kernel=%s metric=start_s value=%.3f" % (name, start_s),
          flush=True)
    print("kernel=%s metric=cpu_ms_per_execute value=%.3f" % (name, cpu),
          flush=True)
    line("reply_ms", reply)
    line("idle_ms", idle)


def main():
    prefix = tempfile.mkdtemp(prefix="dlua-kernelspec-")
    subprocess.run([os.path.join(ROOT, "build", "dlua"), "kernel", "install",
                    "--prefix", prefix], check=True, stdout=subprocess.DEVNULL)
    os.environ["JUPYTER_PATH"] = os.path.join(prefix, "share", "jupyter")
    only = os.environ.get("KERNELS", "dlua python3").split()
    if "dlua" in only:
        bench("dlua")
    if "python3" not in only:
        pass
    else:
      try:
        import ipykernel  # noqa: F401
      except ImportError:
        print("kernel=python3 skipped (python3-ipykernel not installed)")
      else:
        bench("python3")
    subprocess.run(["rm", "-rf", prefix])


if __name__ == "__main__":
    main()
