-- wrk script for scripts/load.sh and scripts/soak.sh: the request kinds given after `--`
-- (saju, astrology, cached, composed, generated, embed, checkout) are sent round robin; the
-- summary prints latency percentiles, the status-code breakdown summed over threads, and how
-- many 429/503 answers lacked `Retry-After`. Environment: STARPILLAR_LOAD_TOKEN (a session
-- token for checkout), STARPILLAR_LOAD_PRICE (the price id to check out).

local BIRTH = '{"date":"1990-05-15","time":"14:30","calendar":"solar",'
  .. '"timezone":"Asia/Seoul","longitude":126.978}'
local ASTRO = '{"birth":{"datetime":"1990-05-15T12:30","timezone":"Asia/Seoul",'
  .. '"latitude":37.5665,"longitude":126.978},"house_system":"placidus","reading":false}'

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
  table.insert(threads, thread)
end

local kinds = {}
local token = os.getenv("STARPILLAR_LOAD_TOKEN") or ""
local price = os.getenv("STARPILLAR_LOAD_PRICE") or "price_load"
counter = 0
statuses = {}
retry_missing = 0

function init(args)
  for _, a in ipairs(args) do
    table.insert(kinds, a)
  end
  if #kinds == 0 then
    kinds = { "saju" }
  end
end

local function reading(mode, question)
  return '{"birth":' .. BIRTH .. ',"sex":"female","reading":true,"locale":"en","mode":"'
    .. mode .. '","question":"' .. question .. '"}'
end

local function post(path, body, extra)
  local headers = { ["Content-Type"] = "application/json" }
  if extra then
    for k, v in pairs(extra) do
      headers[k] = v
    end
  end
  return wrk.format("POST", path, headers, body)
end

function request()
  counter = counter + 1
  local kind = kinds[(counter % #kinds) + 1]
  local unique = string.format("%d-%d-%d", thread_id or 0, counter, os.time())
  if kind == "saju" then
    return post("/api/saju", '{"birth":' .. BIRTH .. ',"sex":"female","reading":false}')
  elseif kind == "astrology" then
    return post("/api/astrology", ASTRO)
  elseif kind == "cached" then
    return post("/api/saju", reading("compose", "How does this year look for work?"))
  elseif kind == "composed" then
    return post("/api/saju", reading("compose", "Load test " .. unique .. ": what about work?"))
  elseif kind == "generated" then
    return post("/api/saju", reading("generate", "Load test " .. unique .. ": and love?"))
  elseif kind == "embed" then
    return post("/v1/embeddings",
      '{"model":"multilingual-e5-small","input":"query: load test ' .. unique .. '"}')
  elseif kind == "checkout" then
    return post("/api/checkout", '{"price_id":"' .. price .. '"}',
      { ["Authorization"] = "Bearer " .. token })
  end
  return wrk.format("GET", "/healthz")
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 429 or status == 503 then
    if headers["retry-after"] == nil and headers["Retry-After"] == nil then
      retry_missing = retry_missing + 1
    end
  end
end

function done(summary, latency, requests)
  local total = {}
  local missing = 0
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses") or {}) do
      total[code] = (total[code] or 0) + n
    end
    missing = missing + (t:get("retry_missing") or 0)
  end
  local codes = {}
  for code, n in pairs(total) do
    table.insert(codes, string.format("%d=%d", code, n))
  end
  table.sort(codes)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p95_us=%d p99_us=%d max_us=%d "
      .. "connect=%d read=%d write=%d timeout=%d non2xx=%d retry_missing=%d codes=%s\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout, e.status,
    missing, table.concat(codes, ",")))
end
