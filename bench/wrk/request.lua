-- The request every wrk connection sends, configured from the environment so wrk keeps its
-- static (pre-built) request: a `request()` function would run Lua for every request.
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.headers["Origin"] = "http://bench.example"
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
local body = os.getenv("BENCH_BODY")
if body ~= nil and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
