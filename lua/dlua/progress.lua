--[==[
dlua.progress -- a live progress bar for futures on a terminal (Dask's
`progress` in a script).

  local dlua = require "dlua"
  local client = dlua.Client()
  local futs = dlua.progress(client:map(work, items))   -- blocks, returns futs
  local total = dlua.progress(add(inc(1), inc(2)))       -- a Delayed: persisted,
  print(total:result())                                  -- tracked, its future
  local v = z:compute{progress = true}                   -- bar while computing

  dlua.progress(x [, opts]) -> x, with every Delayed replaced by its future
    x      a future, a Delayed, or a table of them (nested tables are walked;
           Delayeds are persisted together, as one graph, first), or a
           dlua.as_completed (its futures are tracked; it still yields
           them all afterwards).
    opts   a plain table:
      file     where to draw (default io.stderr);
      tty      true: draw the live bar, false: print only a final summary
               (default: whether `file` is a terminal -- io.stdout and
               io.stderr are checked once with `test -t`, other files are
               not terminals);
      width    columns to fit the bar in (default: $COLUMNS, else the
               terminal's width from `stty size`, else 80);
      interval seconds between redraws (default 0.1);
      client   the client Delayeds are computed on (default: as compute).
  It blocks until every future is done, finished or failed, and never
  raises for a failed task: failures are counted (in red on a terminal).

On a terminal, redrawn in place (ANSI cursor movement), one line for all
tasks and one per task group (key prefix: `inc` for `inc-5f0c...`) when
there are several:

  total [##############-------]  150/200  75%  48.2 tasks/s  3.1s  ETA 1.0s
    inc [#####################]  100/100
    add [######xx-------------]   50/100  2 failed

Otherwise one plain line when all is done (no escape codes):

  progress: 198/200 done, 2 failed, elapsed 3.21s, 61.7 tasks/s; inc 100/100, add 98/100 (2 failed)

Set NO_COLOR to draw without colours.

In a Jupyter notebook (`dlua kernel`), when neither file nor tty is given,
the bar is one cell output replaced in place (update_display_data) at each
redraw, not a stream of lines.
]==]

local error, ipairs, next, pcall, require, tonumber, tostring, type,
  getmetatable = error, ipairs, next, pcall, require, tonumber, tostring,
  type, getmetatable
local floor, max, min, huge = math.floor, math.max, math.min, math.huge
local tointeger = math.tointeger
local fmt, rep, sub = string.format, string.rep, string.sub
local concat, unpack = table.concat, table.unpack
local getenv, os_execute = os.getenv, os.execute
local io_popen, io_stdout, io_stderr = io.popen, io.stdout, io.stderr
local loaded = package.loaded

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error
local _ENV = nil -- luacheck: ignore  (every global is captured above)

local RED, GREEN, RESET = "\27[31m", "\27[32m", "\27[0m"
local CLEAR_LINE = "\27[2K"

-- ----------------------------------------------------------- the terminal

local tty_cache = {}        -- fd -> boolean, each checked once

local function is_tty(file)
  local fd = file == io_stdout and 1 or file == io_stderr and 2 or nil
  if not fd then return false end
  if tty_cache[fd] == nil then
    local term = getenv("TERM")
    tty_cache[fd] = term ~= "dumb"
      and os_execute("test -t " .. fd) == true or false
  end
  return tty_cache[fd]
end

local function term_width()
  local c = tointeger(tonumber(getenv("COLUMNS")))
  if c and c > 0 then return c end
  local p = io_popen("stty size 2>/dev/null")
  if p then
    local s = p:read("a") or ""
    p:close()
    local w = tointeger(tonumber(s:match("^%s*%d+%s+(%d+)")))
    if w and w > 0 then return w end
  end
  return 80
end

-- ------------------------------------------------------------ formatting

local function fmt_time(s)
  if s ~= s or s == huge then return "?" end
  if s < 60 then return fmt("%.1fs", s) end
  if s < 3600 then return fmt("%dm%02ds", floor(s / 60), floor(s % 60)) end
  return fmt("%dh%02dm", floor(s / 3600), floor(s % 3600 / 60))
end

local function fmt_rate(r)
  if r >= 100 then return fmt("%.0f tasks/s", r) end
  return fmt("%.1f tasks/s", r)
end

-- A line is a list of {text, colour-or-false} segments; render it cut to
-- `width` visible characters, with colours only when `color`.
local function render(segs, width, color)
  local out, left = {}, width
  for _, s in ipairs(segs) do
    if left <= 0 then break end
    local t = s[1]
    if #t > left then t = sub(t, 1, left) end
    left = left - #t
    if color and s[2] and t ~= "" then
      out[#out + 1] = s[2] .. t .. RESET
    else
      out[#out + 1] = t
    end
  end
  return concat(out)
end

-- Bar segments: done part green '#', failed part red 'x', the rest '-'.
local function bar(segs, width, done, failed, total)
  local nd, nf
  if total == 0 then
    nd, nf = width, 0
  else
    nf = floor(width * failed / total)
    if failed > 0 and nf == 0 then nf = 1 end
    nd = floor(width * (done + failed) / total) - nf
    if nd < 0 then nd = 0 end
  end
  segs[#segs + 1] = {"[", false}
  segs[#segs + 1] = {rep("#", nd), GREEN}
  segs[#segs + 1] = {rep("x", nf), RED}
  segs[#segs + 1] = {rep("-", width - nd - nf), false}
  segs[#segs + 1] = {"]", false}
end

local function pad_left(s, n) return rep(" ", n - #s) .. s end

-- ---------------------------------------------------------------- tracking

local function key_prefix(k)
  return k:match("^(.*)%-[^-]*$") or k
end

local function new_tracker(futs)
  local tr = {
    total = 0, done = 0, failed = 0, groups = {}, byname = {},
    clients = {}, seen = {},
  }
  local function group(name)
    local g = tr.byname[name]
    if not g then
      g = {name = name, total = 0, done = 0, failed = 0}
      tr.byname[name] = g
      tr.groups[#tr.groups + 1] = g
    end
    return g
  end
  for _, f in ipairs(futs) do
    local key = f.key
    if not tr.seen[key] then
      tr.seen[key] = true
      local g = group(key_prefix(key))
      g.total = g.total + 1
      tr.total = tr.total + 1
      local c = f.client
      if not tr.clients[c] then
        tr.clients[c] = true
        tr.clients[#tr.clients + 1] = c
      end
      local function finish(fut)
        local s = require("dlua.cluster").fstatus(fut)
        if s == nil or s == "finished" then
          g.done = g.done + 1
          tr.done = tr.done + 1
        else
          g.failed = g.failed + 1
          tr.failed = tr.failed + 1
        end
      end
      -- A released future cannot be watched: count it as done.
      if not pcall(f.add_done_callback, f, finish) then finish(f) end
    end
  end
  return tr
end

-- ----------------------------------------------------------------- drawing

local function frame(tr, elapsed, width, color)
  local finished = tr.done + tr.failed
  local rate = elapsed > 0 and finished / elapsed or 0
  local eta
  if finished >= tr.total then eta = 0
  elseif rate > 0 then eta = (tr.total - finished) / rate
  else eta = huge end
  local several = #tr.groups > 1
  local mname = several and "total" or (tr.groups[1] and tr.groups[1].name
                                        or "total")
  local namew = #mname
  if several then
    for _, g in ipairs(tr.groups) do namew = max(namew, #g.name + 2) end
  end
  namew = min(namew, 24)
  local cw = #tostring(tr.total)
  local pct = tr.total > 0 and floor(100 * finished / tr.total) or 100
  local right = fmt("  %s  %3d%%  %s  %s  ETA %s",
                    pad_left(fmt("%d/%d", finished, tr.total), 2 * cw + 1), pct,
                    fmt_rate(rate), fmt_time(elapsed), fmt_time(eta))
  local fail = tr.failed > 0 and fmt("  %d failed", tr.failed) or ""
  -- The bar keeps one width from the first frame to the last: room is kept
  -- for the longest text on its right (what does not fit is cut off).
  local usable = width - 1               -- never touch the last column
  local room = 2 * cw + 1 + #"    100%  999.9 tasks/s  59m59s  ETA 59m59s"
    + #"   failed" + cw
  local bw = max(10, usable - namew - 3 - room)
  local lines = {}
  local segs = {{pad_left(sub(mname, 1, namew), namew) .. " ", false}}
  bar(segs, bw, tr.done, tr.failed, tr.total)
  segs[#segs + 1] = {right, false}
  segs[#segs + 1] = {fail, RED}
  lines[1] = render(segs, usable, color)
  if several then
    for _, g in ipairs(tr.groups) do
      local gs = {{pad_left(sub(g.name, 1, namew - 2), namew) .. " ", false}}
      bar(gs, bw, g.done, g.failed, g.total)
      gs[#gs + 1] = {"  " .. pad_left(fmt("%d/%d", g.done + g.failed,
                                          g.total), 2 * cw + 1), false}
      gs[#gs + 1] = {g.failed > 0 and fmt("  %d failed", g.failed) or "", RED}
      lines[#lines + 1] = render(gs, usable, color)
    end
  end
  return lines
end

local function summary(tr, elapsed)
  local finished = tr.done + tr.failed
  local rate = elapsed > 0 and finished / elapsed or 0
  local s = fmt("progress: %d/%d done, %d failed, elapsed %.2fs, %s",
                tr.done, tr.total, tr.failed, elapsed, fmt_rate(rate))
  if #tr.groups > 1 then
    local gs = {}
    for i, g in ipairs(tr.groups) do
      gs[i] = fmt("%s %d/%d", g.name, g.done, g.total)
        .. (g.failed > 0 and fmt(" (%d failed)", g.failed) or "")
    end
    s = s .. "; " .. concat(gs, ", ")
  end
  return s
end

-- ------------------------------------------------------------------ inputs

local OPTION = {file = true, tty = true, width = true, interval = true,
                client = true}

local function check_options(o)
  if o == nil then return {} end
  if type(o) ~= "table" then
    error("dlua.progress: options must be a table, got " .. type(o), 3)
  end
  for k in next, o do
    if not OPTION[k] then
      error(fmt("dlua.progress: unknown option '%s'%s", tostring(k),
                require("dlua")._did_you_mean(k, OPTION)), 3)
    end
  end
  if o.width ~= nil and (tointeger(o.width) == nil or o.width < 20) then
    error("dlua.progress: width must be an integer >= 20", 3)
  end
  if o.interval ~= nil and (type(o.interval) ~= "number"
                            or not (o.interval > 0)) then
    error("dlua.progress: interval must be a positive number", 3)
  end
  if o.file ~= nil and (type(o.file) ~= "userdata" and type(o.file) ~= "table"
                        or not o.file.write) then
    error("dlua.progress: file must be a file (io.stderr, io.open(...))", 3)
  end
  return o
end

-- Walk x: futures to futs, Delayeds to dels (cycles and repeats safe).
local function collect(x, is_future, is_delayed, futs, dels, seen)
  if is_future(x) then
    futs[#futs + 1] = x
  elseif is_delayed and is_delayed(x) then
    if not seen[x] then seen[x] = true; dels[#dels + 1] = x end
  elseif type(x) == "table" and not seen[x] then
    seen[x] = true
    for _, v in next, x do collect(v, is_future, is_delayed, futs, dels, seen) end
  end
end

-- Copy x with each Delayed replaced by its future (when it has one).
local function replace(x, is_delayed, byd, copies)
  if is_delayed(x) then return byd[x] or x end
  if type(x) ~= "table" or getmetatable(x) ~= nil then return x end
  if copies[x] then return copies[x] end
  local t = {}
  copies[x] = t
  for k, v in next, x do t[k] = replace(v, is_delayed, byd, copies) end
  return t
end

-- ------------------------------------------------------------------ run

-- Block until every future in the list is done, drawing as we go.
local function track(futs, o)
  local dl = require "dlua"
  local now = dl.time
  local start = now()
  local file = o.file or io_stderr
  local tty = o.tty
  if tty == nil then tty = is_tty(file) end
  local tr = new_tracker(futs)
  local interval = o.interval or 0.1
  -- In a Jupyter notebook (dlua kernel), unless a file or tty was asked
  -- for: one output, replaced in place at each redraw.
  local disp = loaded["dlua.display"]
  if o.file == nil and o.tty == nil and disp and disp._kernel then
    local id = disp.display("", {display_id = true})
    local last = -huge
    while true do
      local complete = tr.done + tr.failed >= tr.total
      if complete or now() - last >= interval then
        local text = concat(frame(tr, now() - start, o.width or 80, false),
                            "\n")
        disp._kernel.publish({["text/plain"] = text, ["text/html"] =
          "<pre>" .. disp.escape(text) .. "</pre>"}, id, true)
        last = now()
      end
      if complete then break end
      tr.clients[1]:_pump(max(0.001, min(interval, last + interval - now())))
      for i = 2, #tr.clients do tr.clients[i]:_pump(0) end
    end
    return tr
  end
  if not tty then
    while tr.done + tr.failed < tr.total do
      tr.clients[1]:_pump(interval)
      for i = 2, #tr.clients do tr.clients[i]:_pump(0) end
    end
    file:write(summary(tr, now() - start), "\n")
    if file.flush then file:flush() end
    return tr
  end
  local width = o.width or term_width()
  local color = getenv("NO_COLOR") == nil
  local nlines, last = 0, -huge
  local function draw()
    local lines = frame(tr, now() - start, width, color)
    local buf = {}
    if nlines > 0 then buf[1] = fmt("\r\27[%dA", nlines) end
    for _, l in ipairs(lines) do
      buf[#buf + 1] = CLEAR_LINE .. l .. "\n"
    end
    file:write(concat(buf))
    if file.flush then file:flush() end
    nlines = #lines
    last = now()
  end
  while true do
    local complete = tr.done + tr.failed >= tr.total
    if complete or now() - last >= interval then draw() end
    if complete then break end
    local wait = max(0.001, min(interval, last + interval - now()))
    tr.clients[1]:_pump(wait)
    for i = 2, #tr.clients do tr.clients[i]:_pump(0) end
  end
  return tr
end

--- progress(x [, opts]) -> x with Delayeds replaced by futures; see above.
local function progress(x, o)
  o = check_options(o)
  local dl = require "dlua"
  local okd, dmod = pcall(require, "dlua.delayed")
  local is_delayed = okd and type(dmod) == "table" and dmod.is_delayed
  local futs, dels = {}, {}
  if dl.is_as_completed(x) then
    -- every future added so far; the as_completed still yields them all
    for i, f in ipairs(x._all) do futs[i] = f end
    track(futs, o)
    return x
  end
  collect(x, dl.is_future, is_delayed, futs, dels, {})
  if #futs == 0 and #dels == 0 and not (type(x) == "table"
      and getmetatable(x) == nil) then
    error("dlua.progress: expects futures, Delayeds or a table of them, got "
          .. type(x), 2)
  end
  local byd = nil
  if #dels > 0 then
    local got = {}
    local n = #dels
    dels[n + 1] = {progress = function(list)
      for _, f in ipairs(list) do got[f.key] = f; futs[#futs + 1] = f end
    end, client = o.client}
    dmod.persist(unpack(dels, 1, n + 1))
    byd = {}
    for i = 1, n do byd[dels[i]] = got[dels[i].key] end
  end
  track(futs, o)
  if not byd then return x end
  if is_delayed(x) then return byd[x] or x end
  return replace(x, is_delayed, byd, {})
end

--- Called by dlua.delayed's compute/persist with the futures of a graph
-- just submitted, when their options hold `progress`.
local function graph_hook(list, p)
  if type(p) == "function" then return p(list) end
  if #list > 0 then track(list, {}) end
end

return {
  progress = progress,
  _graph = graph_hook,
  _summary = summary,
  _frame = frame,
}
