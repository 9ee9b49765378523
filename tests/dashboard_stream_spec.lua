-- /json/stream past its rings: the dashboard formats each task event once
-- for all viewers (a text ring of up to 2 x 10,000 events that drops its
-- older half when full) and answers every since from it as the scheduler's
-- ring of 10,000 would.  Its own cluster: the counts here are exact.
local BUSTED_ENV = _ENV
local describe, it, setup, teardown, assert =
  describe, it, setup, teardown, assert
local _ENV = _G

local dlua = require "dlua"
local H = require "helpers.cluster"
local HTTP = require "helpers.http"
local json_decode, http = HTTP.json_decode, HTTP.get

function dstream_inc(x) return x + 1 end

local RING = 10000 -- DL_SCHED_EVENTS

describe("dashboard task stream", function()
  local dash = HTTP.dashboard(2)
  local client, base
  setup(function() dash.start(); client, base = dash.client, dash.base end)
  teardown(dash.stop)

  local function stream(since) return dash.json("/json/stream?since=" .. since) end

  local function formatted()
    local _, body = http(base .. "/metrics")
    return tonumber(body:match(
      "\ndlua_dashboard_stream_events_formatted_total (%d+)\n"))
  end

  -- The number of the next event to come.
  local function tail()
    local s = stream(0)
    while #s.events > 0 do s = stream(s.next) end
    return s.next
  end

  -- Run n trivial tasks to the end; they are released after.
  local function run(n, from)
    local seq = {}
    for i = 1, n do seq[i] = from + i end
    local fs = client:map(dstream_inc, seq)
    dlua.wait(fs)
    for _, f in ipairs(fs) do f:release() end
  end

  -- Every event from since on, polled until there are want of them.
  local function read_all(since, want)
    local evs = {}
    assert.truthy(H.poll(function()
      local s = stream(since)
      for _, e in ipairs(s.events) do evs[#evs + 1] = e end
      assert.truthy(#s.events <= 5000)
      since = s.next
      return #evs >= want
    end, 60), ("%d events of %d"):format(#evs, want))
    return evs, since
  end

  it("formats each event once, however often it is asked for", function()
    run(50, 0)
    local evs, next = read_all(0, 50)
    assert.are.equal(50, #evs)
    local n0 = formatted()
    assert.are.equal(50, n0)
    for _ = 1, 20 do
      local s = stream(0)
      assert.are.equal(50, #s.events)
      assert.are.equal(next, s.next)
      assert.are.same(evs[50], s.events[50])
    end
    assert.are.equal(n0, formatted())
  end)

  it("keeps every event in order across the ring's drops", function()
    local since = tail()
    local seen, total = {}, 0
    -- 3 x 7,000 passes the 20,000 the text ring holds before it drops.
    for round = 1, 3 do
      run(7000, round * 10000)
      local evs
      evs, since = read_all(since, 7000)
      assert.are.equal(7000, #evs)
      for _, e in ipairs(evs) do
        assert.is_nil(seen[e.key], e.key)
        seen[e.key] = true
        assert.are.equal("dstream_inc", e.group)
        assert.is_true(e.ok)
      end
      total = total + #evs
    end
    assert.are.equal(21000, total)
    -- since=0: the oldest the scheduler keeps, 5,000 at a time.
    local s = stream(0)
    assert.are.equal(5000, #s.events)
    assert.are.equal(since - RING + 5000, s.next)
    local s2 = stream(s.next)
    assert.are.equal(5000, #s2.events)
    assert.are.equal(since, s2.next)
    -- The two halves join: no event twice, the last one last.
    local keys = {}
    for _, e in ipairs(s.events) do keys[e.key] = true end
    for _, e in ipairs(s2.events) do assert.is_nil(keys[e.key]) end
    -- Past the end: nothing, and the same number back.
    local s3 = stream(since + 7)
    assert.are.equal(0, #s3.events)
    assert.are.equal(since + 7, s3.next)
  end)

  it("starts again at the oldest kept after a gap nobody watched", function()
    local since = tail()
    local before = formatted()
    run(RING + 500, 100000)
    local last = since + RING + 500
    local s = stream(since)
    -- The first 500 of the run are gone from the scheduler's ring too.
    assert.are.equal(5000, #s.events)
    assert.are.equal(last - RING + 5000, s.next)
    local s2 = stream(s.next)
    assert.are.equal(5000, #s2.events)
    assert.are.equal(last, s2.next)
    -- Only what the scheduler still had was formatted.
    assert.are.equal(before + RING, formatted())
  end)

  it("answers pipelined requests in order, large bodies whole", function()
    local port = client.cluster.dashboard_address:match(":(%d+)$")
    local out = os.tmpname()
    local code, msg = H.sh(("bash -c %s > %s"):format(H.q(([[
      exec 3<>/dev/tcp/127.0.0.1/%s
      printf 'GET /json/stream?since=0 HTTP/1.1\r\nHost: HOST\r\n\r\nGET /json/info HTTP/1.1\r\nHost: HOST\r\n\r\nGET /json/stream?since=0 HTTP/1.1\r\nHost: HOST\r\n\r\nGET /json/stream?since=0 HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n' >&3
      timeout 30 cat <&3
    ]]):format(port):gsub("HOST", "127.0.0.1:" .. port)), H.q(out)))
    assert.are.equal(0, code, msg)
    local raw = H.slurp(out)
    os.remove(out)
    local docs, pos = {}, 1
    while pos <= #raw do
      local hs, he = raw:find("\r\n\r\n", pos, true)
      assert.truthy(hs, "a response head")
      local head = raw:sub(pos, hs - 1)
      assert.truthy(head:match("^HTTP/1%.1 200 OK\r\n"), head)
      local len = tonumber(head:match("Content%-Length: (%d+)"))
      docs[#docs + 1] = json_decode(raw:sub(he + 1, he + len))
      assert.are.equal(len, #raw:sub(he + 1, he + len))
      pos = he + len + 1
    end
    assert.are.equal(4, #docs)
    assert.are.equal(5000, #docs[1].events)
    assert.truthy(docs[2].workers)
    assert.are.same(docs[1].events, docs[3].events)
    assert.are.same(docs[1].events, docs[4].events)
  end)
end)
