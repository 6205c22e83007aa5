-- A login flood: password grants as fast as the connections can send them.
-- Body and content type come from the environment (bench/run sets them).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_LOGIN_BODY")
wrk.headers["Content-Type"] = os.getenv("BENCH_LOGIN_CTYPE") or "application/json"
local auth = os.getenv("BENCH_LOGIN_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
