-- POST with a request body never sent before: the second-step rows (an mfa_token and a TOTP
-- code, a passkey assertion), each good for one request.
--
-- $BENCH_BODIES_FILE holds one JSON body per line. Each thread takes its share (line i goes to
-- thread i mod threads) and sends it in order; when its share runs out it counts the request
-- as starved and sends an empty JSON object, which the service refuses (an error).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

wrk.method = "POST"

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

function init(args)
   local nthreads = tonumber(os.getenv("BENCH_WRK_THREADS") or "1")
   bodies, head, tail, starved = {}, 1, 0, 0
   local index = 0
   for line in io.lines(os.getenv("BENCH_BODIES_FILE")) do
      if line ~= "" then
         if index % nthreads == id then
            tail = tail + 1
            bodies[tail] = line
         end
         index = index + 1
      end
   end
end

function request()
   local body = "{}"
   if head <= tail then
      body = bodies[head]
      bodies[head] = nil
      head = head + 1
   else
      starved = starved + 1
   end
   return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
   local starved_total = 0
   for _, thread in ipairs(threads) do
      starved_total = starved_total + thread:get("starved")
   end
   common.report(summary, latency, { starved = starved_total })
end
