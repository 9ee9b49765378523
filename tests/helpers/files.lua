-- Files and shell lines for specs: quote a word for sh, read and write a
-- whole file, make a temporary folder.  Every spec and helper takes these
-- from here.
local F = {}

--- F.q(s) -> s quoted for a POSIX shell (one word, whatever it holds).
function F.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- F.slurp(path) -> the file's bytes, or nil when it cannot be opened.
function F.slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- F.spit(path, s): write s as the whole file (raises on failure).
function F.spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

--- F.tmpdir() -> the path of a new empty folder (remove it with F.rmdir).
function F.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. F.q(d)))
  return d
end

--- F.rmdir(d): remove the folder d and all it holds.
function F.rmdir(d) os.execute("rm -rf " .. F.q(d)) end

return F
