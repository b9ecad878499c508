-- POST /v1/agents with a unique agent name per request: agent names are unique per owner, and
-- the default name (image name + 6 hex digits of the id) collides by the birthday paradox once
-- a benchmark has created a few thousand agents. BENCH_NAME_PREFIX differs per round.
local counter = 0
local prefix = os.getenv("BENCH_NAME_PREFIX") or "b"
local headers = {
  ["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or ""),
  ["Content-Type"] = "application/json",
  ["Origin"] = "http://bench.example",
}

function request()
  counter = counter + 1
  local body = '{"image":"sentinel/echo:latest","name":"' .. prefix .. "-" .. counter .. '"}'
  return wrk.format("POST", nil, headers, body)
end
