-- The same request, each time with the next Cookie header of a list: GET /users/me as many
-- users (distinct access tokens, so the service's memo of verified tokens never helps).
--
-- $BENCH_COOKIES_FILE holds one `name=value` cookie per line. Every thread walks the whole
-- list, round and round, starting at its own offset (thread i of n at i/n of the list), so
-- threads do not send the same token at the same moment.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
end

function init(args)
   local nthreads = tonumber(os.getenv("BENCH_WRK_THREADS") or "1")
   cookies = {}
   for line in io.lines(os.getenv("BENCH_COOKIES_FILE")) do
      if line ~= "" then
         cookies[#cookies + 1] = line
      end
   end
   position = math.floor(#cookies * id / nthreads)
end

function request()
   position = position % #cookies + 1
   wrk.headers["Cookie"] = cookies[position]
   return wrk.format()
end

function done(summary, latency, requests)
   common.report(summary, latency)
end
