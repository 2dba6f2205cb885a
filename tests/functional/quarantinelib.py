"""quarantinelib.py - helpers of the quarantine tests: run `mailwarden
quarantine ...` with the same store and audit log as a daemon under test,
and put a message into the quarantine through the proxy."""

import json
import os

from mwlib import make_msg, plugin_opt, run_mw

CRLF = b"\r\n"


def q(m, *args, opts=(), timeout=30):
    """`mailwarden quarantine ARGS` against daemon m's store and audit log;
    returns CompletedProcess (bytes)."""
    cmd = ["quarantine", "-o", "quarantine_dir=%s" % m.quarantine_dir,
           "-o", "audit_log=%s" % m.audit_path, "-o", "log_level=warning"]
    for k, v in opts:
        cmd += ["-o", "%s=%s" % (k, v)]
    return run_mw(cmd + list(args), timeout=timeout)


def q_ok(m, *args, **kw):
    r = q(m, *args, **kw)
    assert r.returncode == 0, "quarantine %s: rc=%d\n%s" % (args, r.returncode, r.stderr.decode())
    return r


def q_list(m, *args, **kw):
    """The entries of `list --json`."""
    r = q_ok(m, "list", "--json", *args, **kw)
    return json.loads(r.stdout.decode("utf-8"))


def quarantine_opts(*extra):
    """Daemon options: the example plugin, quarantine at score 5."""
    return [plugin_opt(), ("inbound_tag_score", "3"), ("inbound_quarantine_score", "5"),
            ("inbound_reject_score", "15"), ("quarantine_reply", "250 2.0.0 Held for review")] \
        + list(extra)


def spam_msg(subject="buy viagra now", body=None, headers=None):
    """A message the example plugin scores 6 (its Subject holds "viagra")."""
    return make_msg(subject=subject, body=body, headers=headers)


def quarantine_one(m, msg, frm="sender@example.org", rcpts=("rcpt@example.net",),
                   smtputf8=False):
    """Send msg through the proxy; returns the final reply."""
    c = m.client()
    c.ehlo()
    r = c.transaction(frm, list(rcpts), msg, mail_params="SMTPUTF8" if smtputf8 else "")
    c.quit()
    return r["final"]


def entry_files(m):
    """{id: [files]} of the store (recursively)."""
    out = {}
    for root, _, files in os.walk(m.quarantine_dir):
        for f in files:
            if f.startswith("."):
                continue
            out.setdefault(f.rsplit(".", 1)[0], []).append(os.path.join(root, f))
    return out
