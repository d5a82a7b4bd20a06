-- wrk script for bench/es4_get_eis.py: POST pre-built SOAP 1.2 envelopes, rotating among them.
--
--   wrk -t1 -c8 -d20s -s bench/wrk_post.lua http://127.0.0.1:PORT/smsr/es4 -- BODY_DIR COUNT EXPECT
--
-- BODY_DIR holds body_000.xml .. body_<COUNT-1>.xml (exact request bytes). Every response is
-- checked: HTTP 200 and EXPECT (a plain substring, e.g. EXECUTED_SUCCESS) in the body; anything
-- else counts as "bad". done() prints one line "WRK_RESULT {json}" that the Python driver parses.

requests_ = {}
expect = nil
next_index = 0
bad = 0
checked = 0
first_bad = ""

local threads = {}
local thread_count = 0

function setup(thread)
   thread:set("thread_id", thread_count)
   thread_count = thread_count + 1
   table.insert(threads, thread)
end

function init(args)
   local dir, count = args[1], tonumber(args[2])
   expect = args[3]
   local headers = { ["Content-Type"] = "application/soap+xml; charset=utf-8" }
   for i = 1, count do
      local f = assert(io.open(string.format("%s/body_%03d.xml", dir, i - 1), "rb"))
      local body = f:read("*a")
      f:close()
      requests_[i] = wrk.format("POST", wrk.path, headers, body)
   end
   -- threads start at different places in the rotation
   next_index = (thread_id * 7) % count
end

function request()
   next_index = next_index % #requests_ + 1
   return requests_[next_index]
end

function response(status, headers, body)
   checked = checked + 1
   if status ~= 200 or (expect ~= nil and expect ~= "" and not string.find(body, expect, 1, true)) then
      bad = bad + 1
      if first_bad == "" then
         first_bad = string.format("HTTP %d: %s", status, string.sub(body or "", 1, 300))
      end
   end
end

local function json_string(s)
   s = string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end)
   return '"' .. s .. '"'
end

function done(summary, latency, requests)
   local total_bad, total_checked, sample = 0, 0, ""
   for _, t in ipairs(threads) do
      total_bad = total_bad + t:get("bad")
      total_checked = total_checked + t:get("checked")
      if sample == "" then sample = t:get("first_bad") end
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"checked": %d, "bad": %d, "first_bad": %s}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      e.connect, e.read, e.write, e.status, e.timeout,
      total_checked, total_bad, json_string(sample)))
end
