-- Opens wrk's connections, sends ONE request on each, then leaves them idle (keep-alive)
-- for the rest of the run: every later request is delayed far past the run's end.
-- Usage: wrk -c N -t T ... -s idle.lua URL -- <connections per thread>
local per_thread = 0
local n = 0
function init(args)
  per_thread = tonumber(args[1]) or 0
end
function delay()
  n = n + 1
  if n <= per_thread then
    -- First request of each connection: after every connection is up (they all connect
    -- within the first few hundred ms), spread over a second.
    return 1500 + math.random(0, 1000)
  end
  return 3600000
end
