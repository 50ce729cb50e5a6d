-- wrk script: every request presents one of the seeded sessions, round robin, so concurrent
-- connections work on different sessions (as real clients do). TOKENS is a file with one
-- cookie value per line, COOKIE_NAME the cookie's name.
local cookies = {}
local name = os.getenv("COOKIE_NAME")
for line in io.lines(os.getenv("TOKENS")) do
  if #line > 0 then cookies[#cookies + 1] = name .. "=" .. line end
end
local i = 0
request = function()
  i = i % #cookies + 1
  wrk.headers["Cookie"] = cookies[i]
  return wrk.format()
end
