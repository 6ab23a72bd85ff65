-- The same request over and over: GET /users/me and the ceilings (cookie in a -H header), or
-- POST /auth/login with the JSON body read from $BENCH_BODY_FILE.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

local body_file = os.getenv("BENCH_BODY_FILE")
if body_file and body_file ~= "" then
   wrk.method = os.getenv("BENCH_METHOD") or "POST"
   wrk.body = common.read_file(body_file)
end

function done(summary, latency, requests)
   common.report(summary, latency)
end
