"""test_plugin_edits.py - what a plugin's header edits (mw_header_remove,
mw_header_change, include/mailwarden/filter.h) do to a message, the same
through `scan --output` (the proxy's header_edit.c) and the milter
(milter_result.c): the example plugin's edit_header=X-Edit makes it call
them with what the message asks."""

import socket
import struct

from milterlib import RawMilter, milter_pid
from mwlib import free_port, plugin_opt, run_mw, wait_until
from quarantinelib import q_list, q_ok, quarantine_one, spam_msg

HEAD = (b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n"
        b"Message-ID: <x@example.org>\r\nDate: Mon, 02 Jan 2023 10:00:00 +0000\r\n"
        b"X-Stripped: y\r\nX-Spam-Flag: YES\r\n")
KEPT = (b"From:", b"To:", b"Subject:", b"Message-ID:", b"Date:", b"X-Stripped:")


def edit_msg(*asks):
    return HEAD + b"".join(b"X-Edit: " + a + b"\r\n" for a in asks) + b"\r\nbody\r\n"


def scan_output(tmp_path, msg):
    src, out = tmp_path / "m.eml", tmp_path / "out.eml"
    src.write_bytes(msg)
    r = run_mw(["scan", "-o", "%s=%s" % plugin_opt(edit_header="X-Edit"), "--output", str(out), str(src)])
    assert r.returncode == 0, r.stderr
    return out.read_bytes().split(b"\r\n\r\n", 1)[0] + b"\r\n"


def test_scan_removal_takes_the_name_literally(tmp_path):
    """mw_header_remove removes every field of that name: a '*' the name
    ends in is a character of it.  Both front ends read a trailing '*' of
    any removal as a prefix (meant for the policy's X-Spam-*), so a
    sanitizer removing the field a message names, "*", removed the whole
    header; "X-Strip*" took X-Stripped.  The policy's own removal of the
    sender's X-Spam-* still goes (HE_REMOVE_PREFIX)."""
    head = scan_output(tmp_path, edit_msg(b"remove *", b"remove X-Strip*"))
    for f in KEPT:
        assert f in head, ("a removal of a field named with '*' took %r" % f, head)
    assert b"X-Spam-Flag: YES" not in head, head


def test_scan_change_of_an_absent_field_does_nothing(tmp_path):
    """mw_header_change changes the first field of the name; with none,
    nothing (the milter front end agrees: test_milter_* below)."""
    head = scan_output(tmp_path, edit_msg(b"change X-Absent yes", b"change Subject new"))
    assert b"\nX-Absent:" not in head, head
    assert b"Subject: new\r\n" in head and b"Subject: hi" not in head, head


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def milter_mods(mw_factory, upstream, msg):
    port = free_port()
    m = mw_factory(upstream, opts=[("milter_listen", "inet:%d@127.0.0.1" % port),
                                   plugin_opt(edit_header="X-Edit")])
    assert wait_until(lambda: milter_pid(m) is not None and _listening(port), 10.0), m.stderr_tail()
    with RawMilter(port) as a:
        a.negotiate().connect()
        verdict, _, mods = a.message(msg)
    assert verdict == b"c", (verdict, mods)
    # SMFIR_CHGHEADER: index, name, value ("" removes)
    changes = []
    for cmd, data in mods:
        if cmd == b"m":
            name, value = data[4:].split(b"\0")[:2]
            changes.append((struct.unpack(">I", data[:4])[0], name, value))
    return changes


def test_milter_removal_takes_the_name_literally(mw_factory, upstream):
    changes = milter_mods(mw_factory, upstream, edit_msg(b"remove *", b"remove X-Strip*"))
    removed = [name for _, name, value in changes if value == b""]
    assert removed == [b"X-Spam-Flag"], changes


def test_milter_change_of_an_absent_field_is_not_sent(mw_factory, upstream):
    """smfi_chgheader of a field the message lacks adds it (Sendmail, and
    Postfix's cleanup after it): not sent, as the proxy does nothing"""
    changes = milter_mods(mw_factory, upstream, edit_msg(b"change X-Absent yes", b"change Subject new"))
    assert (1, b"Subject", b" new") in changes or (1, b"Subject", b"new") in changes, changes
    assert not [c for c in changes if c[1] == b"X-Absent"], changes


def test_release_keeps_a_filter_removal_ending_in_star_literal(mw_factory, upstream):
    """A filter's mw_header_remove("D*") removes the field named "D*" only:
    the scan kept Date and DKIM-Signature, and so must the release of its
    quarantined message (the release read every recorded removal of a name
    ending in '*' as a prefix, meant only for the policy's old "X-Spam-*")."""
    m = mw_factory(upstream, opts=[plugin_opt(edit_header="X-Edit"), ("inbound_tag_score", "3"),
                                   ("inbound_quarantine_score", "5"), ("inbound_reject_score", "15"),
                                   ("quarantine_reply", "250 2.0.0 Held for review")])
    msg = spam_msg(headers=[("DKIM-Signature", "v=1; a=rsa-sha256; d=example.org; s=s; b=abc"),
                            ("X-Edit", "remove D*")])
    r = quarantine_one(m, msg)
    assert r.raw == b"250 2.0.0 Held for review\r\n", r
    qid = q_list(m)[0]["id"]
    q_ok(m, "release", qid)
    got = upstream.wait_messages(1)
    head = got[0].content.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nDate:" in head and b"DKIM-Signature:" in head, head
