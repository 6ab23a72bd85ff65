-- Shared by the wrk scripts: report the run as one JSON line that benchmarks/loadgen.py parses
-- (exact microsecond percentiles instead of wrk's rounded text; --latency is printed as well).

local common = {}

function common.report(summary, latency, extra)
   local errors = summary.errors
   local fields = {
      string.format('"requests":%d', summary.requests),
      string.format('"duration_us":%d', summary.duration),
      string.format('"p50_us":%d', latency:percentile(50)),
      string.format('"p99_us":%d', latency:percentile(99)),
      string.format('"mean_us":%.1f', latency.mean),
      string.format('"max_us":%d', latency.max),
      string.format(
         '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
         errors.connect, errors.read, errors.write, errors.status, errors.timeout
      ),
   }
   for key, value in pairs(extra or {}) do
      table.insert(fields, string.format('"%s":%d', key, value))
   end
   io.write("BENCH_RESULT {" .. table.concat(fields, ",") .. "}\n")
end

function common.read_file(path)
   local handle = assert(io.open(path, "rb"))
   local content = handle:read("*a")
   handle:close()
   return content
end

return common
