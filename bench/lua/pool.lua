-- A pool of distinct bearer tokens in rotation (many active users): each request carries
-- the next token of the file BENCH_TOKEN_FILE (one token a line), so a proxy that caches
-- verified tokens must hold the whole pool, and one that verifies every request does so.
-- Requests are formatted once, in init, so the rotation costs wrk nothing per request.
local reqs = {}
local i = 0
function init(args)
  local path = os.getenv("BENCH_TOKEN_FILE")
  for line in io.lines(path) do
    if line ~= "" then
      reqs[#reqs + 1] = wrk.format(nil, nil, { Authorization = "Bearer " .. line, Host = wrk.headers["Host"] })
    end
  end
  if #reqs == 0 then error("no tokens in " .. tostring(path)) end
  -- Threads start at different places in the pool.
  i = math.random(#reqs) - 1
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
