-- HTTP for specs: curl a URL, and read the JSON that comes back.
local H = require "helpers.cluster"
local M = {}

--- A tiny JSON reader, enough to check that endpoints answer valid JSON
-- and to look inside: returns the value, or raises on malformed text.
function M.json_decode(s)
  local pos = 1
  local value
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local function fail(what) error(("bad JSON at %d: %s"):format(pos, what)) end
  local function str()
    local out, i = {}, pos + 1
    while true do
      local c = s:sub(i, i)
      if c == "" then fail("unterminated string") end
      if c == '"' then break end
      if c == "\\" then
        local e = s:sub(i + 1, i + 1)
        local map = {['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b",
                     f = "\f", n = "\n", r = "\r", t = "\t"}
        if map[e] then out[#out + 1] = map[e]; i = i + 2
        elseif e == "u" and s:sub(i + 2, i + 5):match("^%x%x%x%x$") then
          out[#out + 1] = utf8.char(tonumber(s:sub(i + 2, i + 5), 16))
          i = i + 6
        else fail("bad escape") end
      elseif c:byte() < 32 then fail("control character in string")
      else out[#out + 1] = c; i = i + 1 end
    end
    pos = i + 1
    return table.concat(out)
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1; return t end
      while true do
        ws()
        if s:sub(pos, pos) ~= '"' then fail("key expected") end
        local k = str()
        ws()
        if s:sub(pos, pos) ~= ":" then fail("':' expected") end
        pos = pos + 1
        t[k] = value()
        ws()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "}" then return t end
        if d ~= "," then fail("',' or '}' expected") end
      end
    elseif c == "[" then
      local t = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1; return t end
      while true do
        t[#t + 1] = value()
        ws()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "]" then return t end
        if d ~= "," then fail("',' or ']' expected") end
      end
    elseif c == '"' then return str()
    elseif s:find("^true", pos) then pos = pos + 4; return true
    elseif s:find("^false", pos) then pos = pos + 5; return false
    elseif s:find("^null", pos) then pos = pos + 4; return nil
    else
      local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
      if not num or num == "" then fail("value expected") end
      pos = pos + #num
      return tonumber(num)
    end
  end
  local v = value()
  ws()
  if pos <= #s then fail("trailing text") end
  return v
end

--- curl a URL: returns status code, body, headers.
function M.get(url, ...)
  local body, hdr = os.tmpname(), os.tmpname()
  local args = {}
  for _, a in ipairs{...} do args[#args + 1] = H.q(a) end
  local p = assert(io.popen(("curl -s -m 10 -o %s -D %s -w '%%{http_code}' %s %s")
    :format(H.q(body), H.q(hdr), table.concat(args, " "), H.q(url))))
  local code = tonumber(p:read("a"))
  p:close()
  local b, h = H.slurp(body) or "", H.slurp(hdr) or ""
  os.remove(body)
  os.remove(hdr)
  return code, b, h
end

--- M.dashboard(n_workers) -> d: a client whose cluster serves a dashboard
-- on a free port, for one describe block: d.start() in setup, d.stop() in
-- teardown (closes the client and its cluster); then d.client, d.base
-- ("http://127.0.0.1:PORT"), d.get(path) -> code, body, and d.json(path)
-- -> the decoded body of an answer that must be 200.
function M.dashboard(n_workers)
  local d = {}
  function d.start()
    d.client = require("dlua").Client{n_workers = n_workers,
                                       dashboard_address = "127.0.0.1:0"}
    d.base = "http://" .. d.client.cluster.dashboard_address
  end
  function d.stop()
    local c = d.client
    d.client = nil
    if c then c:close() end
  end
  function d.get(path) return M.get(d.base .. path) end
  function d.json(path)
    local code, body = M.get(d.base .. path)
    if code ~= 200 then
      error(("GET %s: status %s: %s"):format(path, tostring(code),
                                            tostring(body)), 2)
    end
    return M.json_decode(body)
  end
  return d
end

return M
