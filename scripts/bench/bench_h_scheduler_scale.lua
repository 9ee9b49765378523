-- bench_h_scheduler_scale.lua -- (h) a big graph: N incs + tree sum (fan-in 8).
-- Pairs with shared/bench/dask/bench_h_scheduler_scale.py (which runs Dask's
-- scheduler as its own process and reads its VmHWM).  dlua's scheduler is a
-- thread of this (client) process, so the scheduler's memory is read from
-- /proc/self/status: VmRSS before, VmHWM after (the peak is reset first by
-- writing 5 to /proc/self/clear_refs), so the growth includes the client's
-- own graph (Dask's figure does not: a conservative comparison for dlua).
-- Each (size, mode) runs in a fresh process of its own (this script starts
-- itself once per pair), so "before" never counts memory that an earlier
-- mode freed but the allocator kept; any pair that fails makes the whole
-- run exit non-zero (run-all: FAILED, the table: **no**).
-- Modes, for N = 100,000 and 1,000,000 (env SIZES, MODES):
--   futures  client:map(inc) + tree of client:submit(sum, f1..f8) -- the
--            analogue of Dask's "rawdict" (a graph without delayed objects)
--   delayed  dlua.delayed(inc)(i) + tree of dlua.delayed(sum), :compute()
-- Metrics scheduler_scale.<mode>.n<N>.: total_tasks, graph_build_time,
-- client_submit_time, wait_result_time, compute_wall, rate (tasks/s),
-- scheduler_rss_before / scheduler_peak_rss (MiB, this process),
-- peak_rss_growth_per_task (bytes).
--   build/dlua scripts/bench/bench_h_scheduler_scale.lua
-- Where the bytes of peak_rss_growth_per_task go (futures mode, N = 1M,
-- 1.14M tasks, 20-byte keys; sizeof from gdb, /proc/self/smaps and
-- collectgarbage("count") at the end of the run, which is the peak:
-- every future is still alive there, garbage but not collected; the
-- scheduler's slab and tables read with gdb on the live process):
--   per inc future: Lua userdata 40 (no user value: an anchor table
--     holds the client; a future of its record's first client is only
--     the record's address, the record names that client), its array
--     slot 16 (the bench's own seq slot, 16 more, is made before the
--     baseline since 7 Dec: see inputs below); client record 32 (28 + the
--     4-byte counter of its key, which is the client's stem and a
--     counter; its client a 14-bit number; dl_client.h: a small result
--     keeps the 8 bytes after the head all values share) and its map
--     slot 11 (1.5 * 2^20 slots of 8 bytes for 1.14M keys); the
--     scheduler's task 112 (a 104-byte record + its key's counter, 4
--     bytes, the stem named by number, + the 1 to 3 bytes of its payload
--     that its reference payload does not share, on a slab; its inputs
--     after them in the same block; its function found through the
--     reference, the kept result in the record) and its map slot 11.
--     About 222 B.
--   the tree (143k sum tasks): their records (payload none: each future
--     is its position among the task's inputs, the type name written
--     once, the 8 inputs in the task's block) and their futures (keys
--     made in C: no key string per submit); the rest is the ready
--     queue's run (2 to 8 MB: as many ready tasks as the map got ahead
--     of the workers, rounded up to a power of two; the main noise
--     between runs), the event ring (2.3 MB), Lua's other bytes and
--     mimalloc's pages around them.
--   At the peak (smaps, bf237fd): slabs 174 MB (87 chunks of 2 MiB: the
--   scheduler's about 137 MB, client records 37 MB), mimalloc's arena
--   69 MB (Lua 83 MB in all: 46 of it the userdata, 32 the seq and parts
--   arrays, which are blocks of their own, 16 MiB and 15.6 MB), the two
--   maps 24 MB (12 MiB each), the run 4 MiB.
--   1,365 B before userdata futures, 1,104 B after; 1,002 B with the
--   one-allocation task; 980 B on 7d8e619; 840 B with 24-byte map slots,
--   slab-allocated records and a 272-byte task (loaded 2-vCPU machine);
--   836 B re-measured, 779 B with client:submit's garbage cut; 688 B
--   with task_x (a 176-byte task), 652 B with the client reading task
--   news between submits (its inbox held 38 MB at the first wait), 623 B
--   with dl_imap, 599 B with arrays for the processing lists (152-byte
--   task), 590 B with a 64-byte client record, 582 B with one dependent
--   in the task, 573 B with a 144-byte task, 544 B with 8-byte map
--   slots.  Then (two runs each, one VM): 533/539 B re-measured; 492/492
--   with futures holding their client through the anchor table (80 ->
--   48-byte userdata); 467/466 with a future in a payload as its position
--   among the task's inputs (wire 4; a sum's payload 385 -> 169 B);
--   452/450 with the kept result in the task record; 440/444 with a
--   function as its position among the task's (an inc's payload 49 -> 34
--   B); 432/431 with function entry pointers in the task (8 B, not the
--   16-byte hash); 421/424 with a custom type's name written once per run
--   of its values (a sum's payload 169 -> 85 B); 417/421 with a 136-byte
--   task (32-bit prio and order, one-bit flags); 399/400 with payloads
--   kept without the codec's header; 395/392 with a 56-byte client
--   record; 361/367 with reference payloads (a task keeps only the middle
--   of its payload); 356/357/355 with a map's one function found through
--   the reference (no pointer in the task).  Against 6a69a1c, alternating
--   runs on one VM: futures 533/541/538 -> 360/358/358 B, client process
--   user CPU 3.04-3.18 -> 3.03-3.10 s; delayed 1,121 B (5 runs) -> 978 to
--   981 B, user CPU 6.56 -> 6.51 s (means of 5).
--   Then (mem10; alternating with the build before each step, loaded
--   VM): 358/360 -> 351/353 B with a task's inputs in its own block (136
--   -> 128-byte record); 350/348/353 -> 351/352/354 with 40-byte futures
--   (Lua's count at the peak 91.1 -> 87.0 MB; not seen in the RSS
--   through the noise); 350/356 -> 346/347 with a
--   120-byte task (ready-queue and processing positions sharing 4 bytes,
--   the small fields bit-fields); 342/346 -> 335/337 with a 112-byte task
--   (the group an index, the result's size 32 bits); 334/335 -> 327/331
--   with client:submit's keys made in C (Lua at the peak 87.0 -> 81.1
--   MB); 328/329/327 -> 325/326/326 with a result's first two holders in
--   the task record (a peer's fetch made an 8-byte block for 23% of the
--   tasks); 327/326 -> 328/322 with the event ring's tail on 4 KiB pages
--   (1.7 MiB less, fixed: N = 100k 497 -> 467 B).  Against 75ed537,
--   alternating on a quieter VM: futures 353/355/356 -> 324/324/327 B,
--   user CPU 3.00/2.77/2.72 -> 2.79/2.67/2.59 s; delayed 978/978 ->
--   953/955 B, user CPU 6.03/5.85 -> 5.96/5.94 s.
--   Then (mem11; alternating with the build before each step, loaded
--   2-core VM; this process's user CPU read from /proc/self/stat):
--   325/330/327 -> 310/310/311 B with the client's records of keys made
--   from its stem keeping the counter only (56 -> 40 bytes); 310/313 ->
--   303/304 with a 104-byte task (seq 32 bits, wrapping; nfns and nwho
--   16); 302/303/301 -> 287/287/288 with the scheduler's tasks keeping a
--   stemmed key's counter only (an inc's block 128 -> 112; a stem is
--   kept from its second key in a row, so hashed keys make none); means
--   of six 287 -> 281 with a record naming its client by a 14-bit number
--   (40 -> 32 bytes); 282/281/278 -> 274/271/269 with the two maps'
--   slot arrays growing by halves (16.8 -> 12.6 MB each).  Each step's
--   user CPU looked like noise (3.0 to 3.5 s), but together the stemmed
--   keys cost instructions (written out ~20 times a task; callgrind,
--   N = 100k: 2,308 M -> 2,571 M); then compares without writing keys
--   out, puts with the key at hand, DONE and RELEASE naming their task
--   by the message's key, table-driven hex: 2,468 M (+6.7%).  Against
--   88e0bac, alternating: futures 325/325/327 -> 272/272/272 B, user
--   CPU 3.18/2.90/3.22 -> 3.22/3.12/3.34 s, sys 2.37/1.52/1.14 ->
--   1.54/1.25/1.27 s (fewer pages touched); delayed 954/955 -> 925/925
--   B, user CPU 5.92/5.80 -> 5.92/6.05 s; N = 100k 485/452 -> 439/424 B.
--   Left to do: the ready queue's run (4 MiB here: as many entries as
--   tasks got ahead, rounded up to a power of two), mimalloc's pages
--   around Lua's objects (the arena holds 69 MB for about 51 MB of
--   small Lua objects: the garbage of the build, freed in part-used
--   pages), the task record (104 bytes: a 96-byte one makes an inc's
--   block 104; waiting and processing_on could share 4 bytes as qidx
--   and pidx do, but 4 more are needed), the two maps (24 MB: a client
--   map only for keys that are not a stem's, or one store for both
--   sides, would save one); the stemmed keys' instructions (user CPU
--   +4% here: each rehash and each COMPUTE writes keys out).
local dlua = require "dlua"
local now = dlua.time
local FANIN = tonumber(os.getenv("FANIN")) or 8
local SIZES, MODES = {}, {}
for s in (os.getenv("SIZES") or "100000,1000000"):gmatch("%d+") do SIZES[#SIZES + 1] = tonumber(s) end
for s in (os.getenv("MODES") or "futures,delayed"):gmatch("[%a_]+") do MODES[#MODES + 1] = s end

if #SIZES * #MODES > 1 then
  local exe = arg[-1] or os.getenv("DLUA") or "build/dlua"
  local function q(x) return "'" .. tostring(x):gsub("'", "'\\''") .. "'" end
  local failed = {}
  for _, n in ipairs(SIZES) do
    for _, mode in ipairs(MODES) do
      io.stdout:flush()
      local ok = os.execute(("SIZES=%d MODES=%s %s %s"):format(
        n, q(mode), q(exe), q(arg[0])))
      if not ok then failed[#failed + 1] = mode .. " N=" .. n end
    end
  end
  if #failed > 0 then
    io.stderr:write("bench h failed: " .. table.concat(failed, ", ") .. "\n")
    os.exit(1)
  end
  os.exit(0)
end

local lib = dofile((arg[0]:match("^(.*/)") or "./") .. "lib.lua")
local emit = lib.emit
local function status_kb(field)
  local f = io.open("/proc/self/status")
  if not f then return nil end
  for line in f:lines() do
    local v = line:match("^" .. field .. ":%s*(%d+)")
    if v then f:close(); return tonumber(v) end
  end
  f:close()
end
local function reset_peak()
  local f = io.open("/proc/self/clear_refs", "w")
  if f then f:write("5"); f:close(); return true end
  return false
end

local function inc(x) return x + 1 end
local sum = lib.sum

local function wait_empty(client) return lib.wait_empty(client, 60) end

-- Each builder returns (build_time, submit_time, get_result) .
local builders = {}
-- inputs[mode](n), when there is one, makes the user's input data before
-- the baseline is read: like Dask's figure, which is the scheduler's alone,
-- the per-task growth counts what the client and the scheduler hold, not
-- the list the user passes to map (1M integers: 16 MB, ~14 B per task).
local inputs = {}
function inputs.futures(n)
  local seq = {}
  for i = 1, n do seq[i] = i - 1 end
  return seq
end
function builders.futures(client, n, seq)
  local t0 = now()
  local parts = client:map(inc, seq)
  local ntasks = n
  while #parts > 1 do
    local up = {}
    for i = 1, #parts, FANIN do
      up[#up + 1] = client:submit(sum, table.unpack(parts, i, math.min(i + FANIN - 1, #parts)))
    end
    ntasks = ntasks + #up
    parts = up
  end
  local t1 = now()
  client.handle:flush()   -- submissions are batched; send them now
  local t2 = now()
  -- graph building and submission are one step here: report it as submit
  return 0, t2 - t0, parts[1], ntasks
end
function builders.delayed(client, n)
  local t0 = now()
  local dinc, dsum = dlua.delayed(inc), dlua.delayed(sum)
  local parts = {}
  for i = 1, n do parts[i] = dinc(i - 1) end
  local ntasks = n
  while #parts > 1 do
    local up = {}
    for i = 1, #parts, FANIN do
      up[#up + 1] = dsum(table.unpack(parts, i, math.min(i + FANIN - 1, #parts)))
    end
    ntasks = ntasks + #up
    parts = up
  end
  local t1 = now()
  local fut = dlua.persist(parts[1])   -- compile + submit; returns at once
  local t2 = now()
  return t1 - t0, t2 - t1, fut, ntasks
end

print("# dlua " .. dlua.version)
local client = dlua.Client{n_workers = 2}
for _, n in ipairs(SIZES) do
  for _, mode in ipairs(MODES) do
    assert(builders[mode], "unknown mode " .. mode)
    do
      local tag = ("scheduler_scale.%s.n%d."):format(mode, n)
      wait_empty(client)
      local input = inputs[mode] and inputs[mode](n)
      collectgarbage(); collectgarbage()
      local ok_reset = reset_peak()
      local rss0 = status_kb("VmRSS")
      do
        local build, submit, root, ntasks = builders[mode](client, n, input)
        local t2 = now()
        local res
        if mode == "delayed" then res = root:compute() else res = root:result() end
        local t3 = now()
        assert(res == n * (n + 1) // 2, "wrong sum " .. tostring(res))
        local hwm = status_kb("VmHWM")
        print(("# %s: N=%d fanin=%d total tasks=%d (peak reset: %s)"):format(
          mode, n, FANIN, ntasks, tostring(ok_reset)))
        emit(tag .. "total_tasks", ntasks, "tasks")
        emit(tag .. "graph_build_time", build, "s")
        emit(tag .. "client_submit_time", submit, "s")
        emit(tag .. "wait_result_time", t3 - t2, "s")
        emit(tag .. "compute_wall", submit + (t3 - t2), "s")
        emit(tag .. "rate", ntasks / (submit + (t3 - t2)), "tasks/s")
        emit(tag .. "rate_incl_build", ntasks / (build + submit + (t3 - t2)), "tasks/s")
        emit(tag .. "scheduler_rss_before", rss0 / 1024, "MiB")
        emit(tag .. "scheduler_peak_rss", hwm / 1024, "MiB")
        emit(tag .. "peak_rss_growth_per_task", (hwm - rss0) * 1024 / ntasks, "B")
      end
    end
  end
end
client:close()
