-- drive.lua - feed one message to a running milter with miltertest and
-- print what the milter did, one fact per line, for test_milter.py.
-- Written for mailwarden's tests.
--   miltertest -D SOCK=inet:PORT@127.0.0.1 -D EML=msg.eml -D FROM=a@b
--              -D RCPTS=x@y,z@w [-D IP=192.0.2.10] [-D AUTH=user]
--              [-D HDRS=Name,Name]    print the values of added/inserted fields
--              [-D DELS=Name,Name]    print whether a field of that name was deleted
--              [-D CHGS=Name,Name]    print whether a field of that name was changed
--              -s drive.lua
-- Output: "RCPT addr reply", "EOM reply", "HDR name[n]: value",
-- "DEL name yes|no", "CHG name yes|no", "QUARANTINE yes|no", "BODYCHANGE yes|no".
-- miltertest never prints Lua errors: every failure is echoed first.
local function fail(msg) mt.echo("FAIL: " .. msg); error(msg) end
local ok_, err_ = pcall(function()
  local names = { [SMFIR_ACCEPT]="accept", [SMFIR_CONTINUE]="continue", [SMFIR_REJECT]="reject",
    [SMFIR_TEMPFAIL]="tempfail", [SMFIR_DISCARD]="discard", [SMFIR_REPLYCODE]="replycode" }
  local f = io.open(EML, "rb")
  if f == nil then fail("cannot open " .. tostring(EML)) end
  local data = f:read("a"); f:close()
  local hdrpart, body = data:match("^(.-)\r\n\r\n(.*)$")
  if hdrpart == nil then hdrpart, body = data, "" end
  local conn = mt.connect(SOCK, 40, 0.25)
  if conn == nil then fail("mt.connect(" .. tostring(SOCK) .. ") failed") end
  local function step(what, rc)
    if rc ~= nil then fail(what .. ": " .. tostring(rc)) end
    return mt.getreply(conn)
  end
  step("conninfo", mt.conninfo(conn, "client.example.org", IP or "192.0.2.10"))
  if not mt.test_option(conn, SMFIP_NOHELO) then step("helo", mt.helo(conn, "client.example.org")) end
  mt.macro(conn, SMFIC_MAIL, "i", "QID0001", "{auth_authen}", AUTH or "")
  local r = step("mailfrom", mt.mailfrom(conn, "<" .. (FROM or "sender@example.org") .. ">"))
  mt.echo("MAIL " .. (names[r] or string.char(r)))
  for rcpt in (RCPTS or "rcpt@example.net"):gmatch("[^,]+") do
    r = step("rcptto", mt.rcptto(conn, "<" .. rcpt .. ">"))
    mt.echo("RCPT " .. rcpt .. " " .. (names[r] or string.char(r)))
  end
  -- values go without the space after the colon: miltertest itself sends
  -- " value" when SMFIP_HDR_LEADSPC was negotiated, as an MTA does
  local name, val
  local function flush() if name then step("header " .. name, mt.header(conn, name, val)) end end
  for line in (hdrpart .. "\r\n"):gmatch("(.-)\r\n") do
    if line:match("^[ \t]") and name then val = val .. "\n" .. line
    else
      flush()
      local n, v = line:match("^([^:]+):(.*)$")
      name = n
      if n then
        val = v:gsub("^ ", "")
      end
    end
  end
  flush()
  step("eoh", mt.eoh(conn))
  local pos = 1
  while pos <= #body do
    step("body", mt.bodystring(conn, body:sub(pos, pos + 65534))); pos = pos + 65535
  end
  r = step("eom", mt.eom(conn))
  mt.echo("EOM " .. (names[r] or string.char(r)))
  for h in (HDRS or ""):gmatch("[^,]+") do
    local n = 0
    while true do
      local v = mt.getheader(conn, h, n)
      if v == nil then break end
      mt.echo("HDR " .. h .. "[" .. n .. "]: " .. v); n = n + 1
    end
  end
  for h in (DELS or ""):gmatch("[^,]+") do
    mt.echo("DEL " .. h .. " " .. (mt.eom_check(conn, MT_HDRDELETE, h) and "yes" or "no"))
  end
  for h in (CHGS or ""):gmatch("[^,]+") do
    mt.echo("CHG " .. h .. " " .. (mt.eom_check(conn, MT_HDRCHANGE, h) and "yes" or "no"))
  end
  mt.echo("QUARANTINE " .. (mt.eom_check(conn, MT_QUARANTINE) and "yes" or "no"))
  mt.echo("BODYCHANGE " .. (mt.eom_check(conn, MT_BODYCHANGE) and "yes" or "no"))
  mt.disconnect(conn)
end)
if not ok_ then mt.echo("FAIL: " .. tostring(err_)); error(err_) end
