"""audit_fields.py - where each audit-log field lives in mailwarden's JSON
lines.  The only place that knows the names: align them here if the daemon
spells a field differently.  A dotted path walks nested objects
("durations.scan_ms" is rec["durations"]["scan_ms"])."""

AUDIT = {
    "time": "time",
    "session": "session",
    "listener": "listener",
    "direction": "direction",
    "client_ip": "client_ip",
    "client_port": "client_port",
    "client_name": "client_name",     # forward-confirmed reverse DNS; absent if none
    "helo": "helo",
    "mail_from": "mail_from",
    "rcpts": "rcpts",                 # list of objects:
    "rcpt.address": "address",        #   each with the address ...
    "rcpt.reply": "reply",            #   ... and the upstream's reply to it
    "message_id": "message_id",
    "subject": "subject",
    "size": "size",
    "symbols": "symbols",             # {name: score} or [{name, score}] or [[name, score]]
    "score": "score",
    "action": "action",
    "reply": "reply",                 # the final reply sent to the client
    "queue_id": "queue_id",
    "early_talker": "early_talker",
    "timed_out": "timed_out",         # {filter: what ran out}; absent if none
    "rcpt_checks_cut": "rcpt_checks_cut",  # milter: [{address, timed_out, fault, action}]
                                      #   of the checks at RCPT cut short; absent if none
    "dkim_sign": "dkim_sign",         # outbound: {signed: ["d=D s=S"], kept, failed,
                                      #   unsigned: "why", more: N}; absent if not looked at
    "scan_ms": "scan_ms",
    "total_ms": "total_ms",
}

_MISSING = object()


def _walk(rec, path):
    cur = rec
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def has(rec, name):
    return _walk(rec, AUDIT[name]) is not _MISSING


def field(rec, name):
    """The value of the logical field name in one audit record."""
    v = _walk(rec, AUDIT[name])
    if v is _MISSING:
        raise KeyError("audit record has no %r (looked for %r); its keys: %s"
                       % (name, AUDIT[name], sorted(rec)))
    return v


def rcpts(rec):
    """[(address, reply), ...] of one record."""
    out = []
    for r in field(rec, "rcpts"):
        if isinstance(r, dict):
            out.append((r.get(AUDIT["rcpt.address"]), r.get(AUDIT["rcpt.reply"])))
        elif isinstance(r, (list, tuple)) and len(r) >= 2:
            out.append((r[0], r[1]))
        else:
            out.append((r, None))
    return out


def symbols(rec):
    """{name: score} of one record, whatever the layout."""
    return normalize_symbols(field(rec, "symbols"))


def normalize_symbols(s):
    """{name: score} from {name: score}, {name: {score}}, [{name, score}] or [[name, score]]."""
    if isinstance(s, dict):
        out = {}
        for k, v in s.items():
            out[k] = v.get("score") if isinstance(v, dict) else v
        return out
    out = {}
    for item in s:
        if isinstance(item, dict):
            out[item.get("name")] = item.get("score")
        elif isinstance(item, (list, tuple)):
            out[item[0]] = item[1] if len(item) > 1 else None
        else:
            out[item] = None
    return out
