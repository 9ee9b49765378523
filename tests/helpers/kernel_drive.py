"""Drive `dlua kernel` with Debian's jupyter_client, as a notebook would.

usage: python3 kernel_drive.py SCENARIO

JUPYTER_PATH must hold the kernelspec (dlua kernel install --prefix P;
JUPYTER_PATH=P/share/jupyter).  Each scenario starts a kernel, checks what
it answers, shuts it down, and prints "ok SCENARIO"; a failed check raises
(exit status 1, the reason on stderr).  The kernel's own log (stderr) goes
to $KERNEL_LOG when set.
"""
import json
import os
import signal
import sys
import time

from jupyter_client.manager import start_new_kernel
from jupyter_client.session import Session

TIMEOUT = 30


def check(cond, what, *shown):
    if not cond:
        raise AssertionError(what + "".join("\n  " + repr(s) for s in shown))


def deadline_wait(pred, what, secs=TIMEOUT):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def start():
    log = os.environ.get("KERNEL_LOG")
    kw = {}
    if log:
        kw["stderr"] = open(log, "ab")
    km, kc = start_new_kernel(kernel_name="dlua", startup_timeout=TIMEOUT,
                              **kw)
    return km, kc


def run(kc, code, **kw):
    """Execute code; returns (reply content, [(msg_type, content)...])."""
    out = []
    r = kc.execute_interactive(
        code, timeout=TIMEOUT,
        output_hook=lambda m: out.append((m["msg_type"], m["content"])),
        **kw)
    return r["content"], [o for o in out if o[0] != "status"]


def shell_reply(kc, want=None):
    """The next shell reply, past any kernel_info reply that is not to
    want.  When a kernel starts slowly (a loaded machine), jupyter_client's
    wait_for_ready sends kernel_info again each second until one reply
    arrives, so the replies to the earlier requests are still queued when
    a scenario starts."""
    while True:
        m = kc.get_shell_msg(timeout=TIMEOUT)
        if (m["msg_type"] != "kernel_info_reply"
                or m["parent_header"].get("msg_id") == want):
            return m


def text_of(outs, kind="stdout"):
    return "".join(c["text"] for t, c in outs
                   if t == "stream" and c["name"] == kind)


def result_of(outs):
    rs = [c for t, c in outs if t == "execute_result"]
    return rs[0]["data"] if rs else None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# ------------------------------------------------------------ scenarios

def basic(km, kc):
    info = shell_reply(kc, kc.kernel_info())["content"]
    check(info["protocol_version"] == "5.3", "protocol 5.3", info)
    check(info["language_info"]["name"] == "lua", "language lua", info)
    rep, outs = run(kc, "1+1")
    check(rep["status"] == "ok", "1+1 ok", rep)
    check(result_of(outs) == {"text/plain": "2"}, "1+1 shows 2", outs)
    n1 = rep["execution_count"]
    rep, outs = run(kc, "print('hi', 3); io.write('x\\n')")
    check(text_of(outs) == "hi\t3\nx\n", "print streams", outs)
    check(result_of(outs) is None, "a statement shows no value", outs)
    check(rep["execution_count"] == n1 + 1, "count goes up", rep)
    rep, outs = run(kc, "local x = 20\nx + 1")
    check(result_of(outs) == {"text/plain": "21"}, "last line shown", outs)
    rep, outs = run(kc, "return 1, 'a', {2}")
    check(result_of(outs) == {"text/plain": '1\t"a"\t{ 2 }'},
          "several values as the REPL prints them", outs)
    rep, outs = run(kc, "io.stderr:write('warn\\n')")
    check(text_of(outs, "stderr") == "warn\n", "stderr streams", outs)
    # An error: error reply, traceback, the kernel alive.
    rep, outs = run(kc, "local function f() error('boom') end\nf()")
    check(rep["status"] == "error", "error reply", rep)
    check("boom" in rep["evalue"], "error message", rep)
    check(any("traceback" in line for line in rep["traceback"]),
          "a Lua traceback", rep)
    errs = [c for t, c in outs if t == "error"]
    check(len(errs) == 1 and errs[0]["ename"] == "LuaError",
          "error on IOPub", outs)
    rep, outs = run(kc, "x_after = 5\nx_after * 2")
    check(result_of(outs) == {"text/plain": "10"}, "alive after error",
          outs)
    # Silent: no execute_input, no result, the count unchanged.
    cnt = rep["execution_count"]
    rep, outs = run(kc, "1 + 1", silent=True)
    check(outs == [], "silent shows nothing", outs)
    rep, outs = run(kc, "'\\xff' .. 'ok'")
    check(result_of(outs)["text/plain"].endswith('ok"'),
          "bad UTF-8 still sent", outs)
    rep, outs = run(kc, "3")
    check(rep["execution_count"] == cnt + 2, "silent is not counted", rep)


def complete(km, kc):
    c = kc.complete("string.fo", reply=True, timeout=TIMEOUT)["content"]
    check(c["matches"] == ["string.format"], "string.fo", c)
    check(c["cursor_start"] == 0 and c["cursor_end"] == 9, "bounds", c)
    code = "x = ma"
    c = kc.complete(code, reply=True, timeout=TIMEOUT)["content"]
    check("math" in c["matches"] and c["cursor_start"] == 4,
          "a global after other text", c)
    run(kc, "obj = {} ; function obj:hello() end; obj.hey = 1")
    c = kc.complete("é = obj:he", reply=True, timeout=TIMEOUT)["content"]
    check(c["matches"] == ["obj:hello"], "methods only after ':'", c)
    check(c["cursor_start"] == 4, "code points, not bytes", c)
    run(kc, "-- Adds one to x.\nfunction inc(x, ...) return x + 1 end")
    i = kc.inspect("inc(", 2, reply=True, timeout=TIMEOUT)["content"]
    check(i["found"], "inspect finds inc", i)
    t = i["data"]["text/plain"]
    check("inc(x, ...)" in t and "Adds one to x." in t, "signature + doc",
          t)
    i = kc.inspect("nosuchname", 3, reply=True, timeout=TIMEOUT)["content"]
    check(not i["found"], "unknown name not found", i)
    for code, want in [("for i = 1, 2 do", "incomplete"),
                       ("x = 1 +", "incomplete"),
                       ("x = )", "invalid"),
                       ("x = 1", "complete"),
                       ("1 + 1", "complete")]:
        kc.is_complete(code)
        r = shell_reply(kc)["content"]
        check(r["status"] == want, "is_complete " + code, r)


def stdin(km, kc):
    prompts = []

    def answer(msg):
        prompts.append(msg["content"])
        kc.input("hello")

    rep, outs = run(kc, "local a = io.read()\nlocal n = io.read('n')\n"
                    "return a .. '!', n", stdin_hook=answer)
    check(rep["status"] == "ok", "read ok", rep)
    check(len(prompts) == 2, "two input requests", prompts)
    check(result_of(outs) == {"text/plain": '"hello!"\tnil'},
          "line read, 'hello' is no number", outs)
    rep, outs = run(kc, "io.read()", allow_stdin=False)
    check(rep["status"] == "error" and "allow_stdin" in rep["evalue"],
          "no stdin when not allowed", rep)


def interrupt(km, kc):
    def interrupted(mid, what):
        km.interrupt_kernel()
        rep = shell_reply(kc)
        check(rep["parent_header"]["msg_id"] == mid, "reply to " + what, rep)
        c = rep["content"]
        check(c["status"] == "error" and c["ename"] == "Interrupted",
              what + " interrupted", c)

    # At once when the cell is announced (its execute_input): the
    # interrupt may come before the cell's first instruction, and stops
    # it all the same.
    mid = kc.execute("while true do end")
    while True:
        m = kc.get_iopub_msg(timeout=TIMEOUT)
        if m["msg_type"] == "execute_input":
            break
    interrupted(mid, "a cell just started")
    # Once the cell runs (it has said so, after setting busy: under load
    # the interrupt can still land before the statement after the print).
    mid = kc.execute("busy = 0; print('looping'); io.stdout:flush()\n"
                     "while true do busy = busy + 1 end")
    while True:
        m = kc.get_iopub_msg(timeout=TIMEOUT)
        if (m["msg_type"] == "stream"
                and "looping" in m["content"].get("text", "")):
            break
    interrupted(mid, "a running loop")
    rep, outs = run(kc, "busy >= 0")
    check(result_of(outs) == {"text/plain": "true"}, "alive, loop ran",
          outs)


def queue(km, kc):
    ids = [kc.execute("local t = os.clock() + 0.2 while os.clock() < t do "
                      "end; print('first')"),
           kc.execute("print('second')"),
           kc.execute("error('third fails')"),
           kc.execute("print('fourth')")]
    replies = [shell_reply(kc) for _ in ids]
    check([r["parent_header"]["msg_id"] for r in replies] == ids,
          "replies in request order", replies)
    counts = [r["content"]["execution_count"] for r in replies]
    check(counts == sorted(counts) and len(set(counts)) == 4,
          "counts in order", counts)
    check([r["content"]["status"] for r in replies] ==
          ["ok", "ok", "error", "ok"], "statuses", replies)
    # The streams came in the same order.
    msgs = iopub_until_idle(kc, ids)
    joined = "".join(m["content"]["text"] for m in msgs
                     if m["msg_type"] == "stream")
    check(joined.index("first") < joined.index("second")
          < joined.index("fourth"), "output order", joined)


def iopub_until_idle(kc, ids):
    """The IOPub messages of the requests ids, up to the idle status of
    each."""
    left, got = set(ids), []
    while left:
        m = kc.get_iopub_msg(timeout=TIMEOUT)
        pid = m["parent_header"].get("msg_id")
        if pid not in ids:
            continue
        got.append(m)
        if (m["msg_type"] == "status" and
                m["content"]["execution_state"] == "idle"):
            left.discard(pid)
    return got


def signature(km, kc):
    log = os.environ["KERNEL_LOG"]
    # Signed with another key: dropped, never executed.
    bad = Session(key=b"not-the-key", username="intruder")
    bad.send(kc.shell_channel.socket, "execute_request",
             {"code": "pwned = true", "silent": False,
              "store_history": True, "user_expressions": {},
              "allow_stdin": False, "stop_on_error": True})
    # Not a message at all: dropped.
    kc.shell_channel.socket.send_multipart([b"garbage", b"<IDS|MSG>", b"x"])
    kc.shell_channel.socket.send_multipart([b"no delimiter"])
    good = kc.session
    msg = good.msg("execute_request", {"code": "return 1", "silent": False,
                                       "store_history": True,
                                       "user_expressions": {},
                                       "allow_stdin": False})
    # A good signature over a header that is not JSON: dropped.
    parts = [b"{not json", b"{}", b"{}", b"{}"]
    sig = good.sign(parts)
    kc.shell_channel.socket.send_multipart([b"<IDS|MSG>", sig] + parts)
    rep, outs = run(kc, "pwned == nil")
    check(result_of(outs) == {"text/plain": "true"},
          "the badly signed cell did not run", outs)
    deadline_wait(lambda: open(log).read().count("dropped") >= 4,
                  "four 'dropped' lines in the kernel's log")
    text = open(log).read()
    check("bad signature" in text, "the log says why", text)
    check("<IDS|MSG>" in text and "JSON" in text, "malformed logged", text)
    del msg


def cluster(km, kc):
    rep, outs = run(kc, "dlua = require 'dlua'\n"
                    "client = dlua.Client{n_workers = 2}\n"
                    "pids = {}\n"
                    "for _, w in ipairs(client.handle:workers()) do "
                    "pids[#pids + 1] = w.pid end\n"
                    "table.concat(pids, ',')")
    check(rep["status"] == "ok", "client started", rep)
    pids = [int(p) for p in result_of(outs)["text/plain"].strip('"')
            .split(",")]
    check(len(pids) == 2, "two workers", pids)
    # Task output reaches the cell.
    rep, outs = run(kc, "client:submit(function() print('from a task') "
                    "io.stdout:flush() return 7 end):result()")
    check(result_of(outs) == {"text/plain": "7"}, "task result", outs)
    check("from a task" in text_of(outs), "the task's print", outs)
    # The client and a future as HTML.
    rep, outs = run(kc, "client")
    html = result_of(outs)["text/html"]
    check("Dashboard" in html and "href=" in html and "Workers" in html,
          "client table", html)
    rep, outs = run(kc, "f = client:submit(function() return 1 end)\n"
                    "f:result()\nf")
    html = result_of(outs)["text/html"]
    check("finished" in html and "color" in html, "future status", html)
    rep, outs = run(kc, "dlua.display(client.cluster)")
    disp = [c for t, c in outs if t == "display_data"]
    check(len(disp) == 1 and "LocalCluster" in disp[0]["data"]["text/html"],
          "display_data of the cluster", outs)
    check(result_of(outs) is None, "display returns nothing shown", outs)
    # dlua.progress: one output, updated in place.
    rep, outs = run(kc, "dlua.progress(client:map(function(x) return x end,"
                    " {1, 2, 3}), {interval = 0.01})\nnil")
    ds = [(t, c) for t, c in outs
          if t in ("display_data", "update_display_data")]
    check(len(ds) >= 2 and ds[0][0] == "display_data" and
          all(t == "update_display_data" for t, _ in ds[1:]),
          "one display, then updates", outs)
    ids = {c["transient"]["display_id"] for _, c in ds}
    check(len(ids) == 1, "all on one display id", ds)
    check("3/3" in ds[-1][1]["data"]["text/plain"] and
          "<pre>" in ds[-1][1]["data"]["text/html"], "the last frame", ds)
    check(text_of(outs) == "" and text_of(outs, "stderr") == "",
          "no stream of lines", outs)
    # Shutdown closes the cluster: no worker left.
    kpid = km.provisioner.process.pid
    km.shutdown_kernel(now=False)
    deadline_wait(lambda: not pid_alive(kpid), "the kernel to exit")
    deadline_wait(lambda: not any(pid_alive(p) for p in pids),
                  "the workers to exit")
    return "done"


def killed(km, kc):
    rep, outs = run(kc, "dlua = require 'dlua'\n"
                    "client = dlua.Client{n_workers = 2}\n"
                    "pids = {}\n"
                    "for _, w in ipairs(client.handle:workers()) do "
                    "pids[#pids + 1] = w.pid end\n"
                    "table.concat(pids, ',')")
    pids = [int(p) for p in result_of(outs)["text/plain"].strip('"')
            .split(",")]
    kpid = km.provisioner.process.pid
    os.kill(kpid, signal.SIGKILL)
    deadline_wait(lambda: not pid_alive(kpid), "the kernel to die")
    deadline_wait(lambda: not any(pid_alive(p) for p in pids),
                  "the workers to exit after the kernel was killed")
    km.cleanup_resources()
    return "done"


def display(km, kc):
    rep, outs = run(kc, "dlua = require 'dlua'\n"
                    "local P = {__html = function(v) return '<b>' .. "
                    "v.n .. '</b>' end, __svg = function() return "
                    "'<svg/>' end, __png = function() return 'PNG' end}\n"
                    "setmetatable({n = 4}, P)")
    d = result_of(outs)
    check(d["text/html"] == "<b>4</b>" and d["image/svg+xml"] == "<svg/>"
          and d["image/png"] == "UE5H", "metamethods", d)
    rep, outs = run(kc, "id = dlua.display('step 1', {display_id = true})\n"
                    "dlua.display('step 2', {display_id = id, "
                    "update = true})")
    kinds = [(t, c.get("transient", {}).get("display_id"))
             for t, c in outs if t in ("display_data",
                                       "update_display_data")]
    check(len(kinds) == 2 and kinds[0][0] == "display_data" and
          kinds[1][0] == "update_display_data" and
          kinds[0][1] == kinds[1][1] and kinds[0][1], "update in place",
          outs)
    rep, outs = run(kc, "dlua.display(1, {update = true})")
    check(rep["status"] == "error" and "display_id" in rep["evalue"],
          "update without id is an error at the caller", rep)
    check(rep["evalue"].startswith("In["), "reported at the cell", rep)
    rep, outs = run(kc, "local delayed = require('dlua.delayed').delayed\n"
                    "local inc = delayed(function(x) return x + 1 end)\n"
                    "inc(inc(1)):visualize()")
    d = result_of(outs)
    check(d is not None and "<svg" in d.get("image/svg+xml", ""),
          "visualize as SVG", outs)
    check("digraph" in d["text/plain"], "DOT text as plain", d)
    rep, outs = run(kc, "local m = setmetatable({}, {__html = function() "
                    "error('bad html') end})\nm")
    check(rep["status"] == "ok" and "bad html" in text_of(outs),
          "a failing __html is reported, plain text kept", outs)


SCENARIOS = {f.__name__: f for f in (basic, complete, stdin, interrupt,
                                     queue, signature, cluster, killed,
                                     display)}


def main():
    name = sys.argv[1]
    km, kc = start()
    try:
        kc.wait_for_ready(timeout=TIMEOUT)
        done = SCENARIOS[name](km, kc)
    finally:
        kc.stop_channels()
        if km.has_kernel and km.is_alive():
            km.shutdown_kernel(now=False)
    if done != "done":
        check(not km.is_alive(), "kernel ended after shutdown")
    print("ok " + name)


if __name__ == "__main__":
    main()
