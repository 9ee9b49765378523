--[==[
dlua.report -- dlua.performance_report: a record of a computation, as one
self-contained HTML file (Dask's `performance_report`).

  dlua.performance_report("report.html", function()
    client:gather(client:map(work, items))
  end)                                    -- -> what the function returned

  do
    local r <close> = dlua.performance_report("report.html")
    ...                                   -- written when r goes out of scope
  end

  dlua.performance_report(filename [, fn] [, opts])
    filename  where to write the report (replaced if it exists)
    fn        run now; the report is written when it returns or raises
              (the error is raised again afterwards).  Without fn, a
              report object is returned: its close (or `<close>`) writes.
    opts      {client = the client to report on (default: the default
              client), title = a line shown at the top (default filename)}

The file holds the task stream of every task that finished in the period
(the scheduler keeps the last 10000 runs), each task group's progress and
every worker's memory at the end, the workers' memory over the period and
the workers' table, with the dashboard's styles, script and hover details
inline: it opens in any browser without a network or a running cluster.
]==]
local M = {}

local type, error, pcall, setmetatable = type, error, pcall, setmetatable
local pack, unpack = table.pack, table.unpack
local io_open, tostring = io.open, tostring

local Report = {}
Report.__index = Report

-- errors name the user's line, whatever the call path (see options.lua)
local error = require("dlua.options")._user_error

-- Write the report; raises "performance_report: ..." at level.
local function write(r, level)
  if r.written then return end
  r.written = true
  local c = r.client
  if c.handle:closed() then
    error("performance_report: the client was closed before the report "
          .. "was written", level)
  end
  local html = c.handle:report(r.t0, r.title)
  local f, err = io_open(r.filename, "w")
  if not f then error("performance_report: " .. err, level) end
  local ok, werr = f:write(html)
  f:close()
  if not ok then error("performance_report: " .. tostring(werr), level) end
end

--- report:close(): write the report now (once; later calls do nothing).
function Report:close() write(self, 3) end
Report.__close = function(r) write(r, 3) end

-- Called by dlua.performance_report as a tail call: level 2 is the user's.
function M.performance_report(filename, fn, opts, dlua)
  if type(filename) ~= "string" or filename == "" then
    error("performance_report: filename must be a non-empty string, got "
          .. (type(filename) == "string" and '""' or type(filename)), 2)
  end
  if type(fn) == "table" and opts == nil then fn, opts = nil, fn end
  if fn ~= nil and type(fn) ~= "function" then
    error("performance_report: second argument must be a function or an "
          .. "options table, got " .. type(fn), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("performance_report: opts must be a table, got " .. type(opts), 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "client" and k ~= "title" then
      error("performance_report: unknown option '" .. tostring(k) .. "'", 2)
    end
  end
  if opts.title ~= nil and type(opts.title) ~= "string" then
    error("performance_report: title must be a string, got "
          .. type(opts.title), 2)
  end
  local client = opts.client or dlua.default_client()
  if client == nil or client.handle == nil or client.handle:closed() then
    error("performance_report: no open client (start one with "
          .. "dlua.Client() first, or pass opts.client)", 2)
  end
  local r = setmetatable({filename = filename, client = client,
                          t0 = dlua.time(), title = opts.title or filename},
                         Report)
  if fn == nil then return r end
  local res = pack(pcall(fn))
  write(r, 2)
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end

return M
