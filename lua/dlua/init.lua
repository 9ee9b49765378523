local core = require "dlua.core"
local M = {}
M.time = core.time
M.version = core.version
return M
