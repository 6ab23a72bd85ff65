-- POST /auth/refresh where every request carries a refresh token that was never sent before.
--
-- $BENCH_TOKENS_FILE holds one refresh token per line (one per session, at least one per
-- connection). Each thread takes its share into a queue; a request pops a token, and the
-- successor in its 200 response is queued again, so every session rotates for real and no
-- token is ever presented twice (a reuse would revoke the session). Tokens still queued at
-- the end are written to $BENCH_LEFTOVER_FILE for the next run.

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
   queue, head, tail, starved = {}, 1, 0, 0
   local index = 0
   for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do
      if line ~= "" then
         if index % nthreads == id then
            tail = tail + 1
            queue[tail] = line
         end
         index = index + 1
      end
   end
end

function request()
   local token = "no-token-left"
   if head <= tail then
      token = queue[head]
      queue[head] = nil
      head = head + 1
   else
      starved = starved + 1  -- answered 401 and counted as an error
   end
   return wrk.format(nil, nil, nil, '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
   if status == 200 then
      local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
      if token then
         tail = tail + 1
         queue[tail] = token
      end
   end
end

function done(summary, latency, requests)
   local leftover = assert(io.open(os.getenv("BENCH_LEFTOVER_FILE"), "w"))
   local starved_total = 0
   for _, thread in ipairs(threads) do
      for _, token in pairs(thread:get("queue")) do
         leftover:write(token, "\n")
      end
      starved_total = starved_total + thread:get("starved")
   end
   leftover:close()
   common.report(summary, latency, { starved = starved_total })
end
