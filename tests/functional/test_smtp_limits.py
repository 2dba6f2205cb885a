"""test_smtp_limits.py - the SMTP proxy's limits on what one client session
may do (session 21, from the rv-smtp review): max_errors reached by every
kind of error (lines refused before they are commands, recipients and VRFY
addresses the upstream refuses, junk commands past junk_command_limit) and
forgiven at a delivered message, as Postfix's smtpd does; the RFC 5321 line
limit without the transparency dot; MAIL's AUTH= parameter on a listener
that offers AUTH; a HELO name over 255 octets, kept whole."""
import base64

import pytest

import mwlib
from mwlib import make_msg, wait_until
from tlslib import TLSUpstream


def replies_until_closed(c, lines, timeout=2):
    """send each of lines, collect the replies (a code, or "closed") until
    mailwarden closes; every reply that came is read, the 421 after a
    500 included"""
    codes = []
    for line in lines:
        try:
            c.send(line)
        except OSError:
            pass                 # closed: the replies before are still buffered
        try:
            codes.append(c.reply(timeout).code)
        except (ConnectionError, OSError):
            codes.append("closed")
            return codes
        while c.pending(0.2):
            try:
                codes.append(c.reply(timeout).code)
            except (ConnectionError, OSError):
                codes.append("closed")
                return codes
    return codes


# --- max_errors: lines refused before they are read as commands ----------

@pytest.mark.parametrize("junk", [b"NOOP\n", b"NOOP " + b"x" * 3000 + b"\r\n", b"NO\0OP\r\n"],
                         ids=["bare_lf", "too_long", "nul"])
def test_refused_lines_reach_max_errors(mw_factory, upstream, junk):
    """a bare-LF, overlong or NUL command line counted an error but never
    checked the limit: a client sending only those got 500 for ever (the
    421 waited for a valid command)"""
    m = mw_factory(upstream, opts=[("max_errors", "3")])
    c = m.client()
    c.ehlo()
    codes = replies_until_closed(c, [junk] * 6)
    assert codes == [500, 500, 500, 421, "closed"], codes


USERS = {"alice": "s3cret-Pa55"}


@pytest.fixture
def auth_upstream():
    u = TLSUpstream(users=USERS).start()
    yield u
    u.stop()


def auth_listener(mw_factory, up, opts=()):
    listen = "127.0.0.1:%d" % mwlib.free_port()
    return mw_factory(up, opts=[("listener.sub.auth", "relay"), ("listener.sub.auth_plaintext", "yes")]
                      + list(opts), listeners=[("sub", listen, up.addr, None)])


def test_undecodable_auth_answers_reach_max_errors(mw_factory, auth_upstream):
    """an AUTH LOGIN answer that is not base64 (501 5.5.2) counted, but
    the 421 waited for the next command"""
    m = auth_listener(mw_factory, auth_upstream, opts=[("max_errors", "2")])
    c = m.client()
    c.ehlo()
    assert c.cmd("AUTH LOGIN").code == 334
    assert c.cmd("!!!not-base64!!!").code == 501
    assert c.cmd("AUTH LOGIN").code == 334
    assert c.cmd("!!!not-base64!!!").code == 501
    assert c.reply(2).code == 421          # no other command needed
    assert c.closed()


# --- max_errors: refusals of the upstream ---------------------------------

def test_refused_recipients_count_towards_max_errors(mw_factory, upstream):
    """a harvester probing recipients on one connection: each refusal of
    the upstream now counts, as Postfix counts its own"""
    m = mw_factory(upstream, opts=[("max_errors", "5")])
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    lines = [b"RCPT TO:<unknown%d@example.net>\r\n" % i for i in range(30)]
    codes = replies_until_closed(c, lines)
    assert codes == [550] * 5 + [421, "closed"], codes
    # 4xx refusals count too (Postfix: any refused RCPT), but 452: see
    # test_upstream_recipient_limit_does_not_abort_the_message
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    codes = replies_until_closed(c, [b"RCPT TO:<tempfail%d@example.net>\r\n" % i for i in range(10)])
    assert codes == [450] * 5 + [421, "closed"], codes


def soft_bounce_rcpt_reply(address):
    """A Postfix answering 450 for unknown users: soft_bounce = yes, or
    reject_unverified_recipient (unverified_recipient_reject_code 450)"""
    if address.split("@")[0].startswith("unknown"):
        return ("450 4.1.1 <%s>: Recipient address rejected: unverified address: "
                "host mx.example.net said: 550 5.1.1 User unknown" % address)
    return "250 2.1.5 Ok"


def test_harvester_behind_an_upstream_answering_450_is_cut(mw_factory, make_upstream):
    """review rv-today5: counting only 5xx (the first fix of rv-today4's
    452 case) let a harvester probe without end behind an upstream that
    answers 450 for unknown users, and learn the valid address among
    the probes; Postfix alone closes it at its hard error limit"""
    up = make_upstream(rcpt_reply=soft_bounce_rcpt_reply)
    m = mw_factory(up, opts=[("max_errors", "5")])
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<harvest@example.org>").code == 250
    lines = [b"RCPT TO:<unknown%d@example.net>\r\n" % i for i in range(50)] + [b"RCPT TO:<ceo@example.net>\r\n"]
    codes = replies_until_closed(c, lines)
    assert codes == [450] * 5 + [421, "closed"], codes


def test_errors_are_forgiven_when_a_message_is_delivered(mw_factory, upstream):
    """a list server reusing its connection: the stale recipients of
    earlier messages do not close it (Postfix forgives at each delivery)"""
    m = mw_factory(upstream, opts=[("max_errors", "3")])
    c = m.client()
    c.ehlo()
    for n in range(4):
        assert c.cmd("FOO").code == 500                          # an error of the client's own
        r = c.transaction("a@example.org", ["unknown%d@example.net" % n, "b@example.net"], make_msg())
        assert [x.code for x in r["rcpt"]] == [550, 250], r
        assert r["final"].code == 250, r["final"]
    assert c.cmd("NOOP").code == 250
    assert len(upstream.wait_messages(4)) == 4
    # refused credentials are never forgiven: tested with AUTH in
    # test_refused_credentials_are_not_forgiven


def test_refused_credentials_are_not_forgiven(mw_factory, auth_upstream):
    """a password guesser that delivers a message between guesses gets no
    more of them: refused AUTH credentials stay counted"""
    m = auth_listener(mw_factory, auth_upstream, opts=[("max_errors", "3")])
    c = m.client()
    c.ehlo()
    bad = "AUTH PLAIN " + base64.b64encode(b"\0alice\0wrong").decode()
    assert c.cmd(bad).code == 535
    assert c.cmd(bad).code == 535
    assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    assert c.cmd(bad).code == 535
    assert c.reply(2).code == 421


def test_refused_vrfy_counts_towards_max_errors(mw_factory, raw_upstream):
    """vrfy = relay: the upstream's refusals count as a refused RCPT's"""
    up = raw_upstream(script={"OTHER": b"550 5.1.1 <x>: Recipient address rejected\r\n"})
    m = mw_factory(up, opts=[("max_errors", "3"), ("vrfy", "relay")])
    c = m.client()
    c.ehlo()
    codes = replies_until_closed(c, [b"VRFY unknown%d\r\n" % i for i in range(6)])
    assert codes == [550, 550, 550, 421, "closed"], codes


# --- junk_command_limit ---------------------------------------------------

def test_junk_commands_past_the_limit_are_errors(mw_factory, upstream):
    """NOOP/RSET/HELP/EHLO for ever kept a session up; past
    junk_command_limit each counts towards max_errors"""
    m = mw_factory(upstream, opts=[("max_errors", "3"), ("junk_command_limit", "4")])
    c = m.client()
    c.ehlo()                                                     # junk 1
    lines = [b"NOOP\r\n", b"RSET\r\n", b"HELP\r\n", b"NOOP\r\n", b"NOOP\r\n", b"EHLO x.example\r\n",
             b"NOOP\r\n"]
    codes = replies_until_closed(c, lines)
    # junk 2..4 pass, 5..7 are errors 1..3: the third ends the session
    assert codes == [250, 250, 214, 250, 250, 250, 421, "closed"], codes


def test_junk_commands_are_forgiven_when_a_message_is_delivered(mw_factory, upstream):
    m = mw_factory(upstream, opts=[("max_errors", "1"), ("junk_command_limit", "3")])
    c = m.client()
    c.ehlo()
    for _ in range(3):
        assert c.cmd("NOOP").code == 250
        assert c.cmd("RSET").code == 250
        assert c.transaction("a@example.org", ["b@example.net"], make_msg())["final"].code == 250
    for _ in range(3):
        assert c.cmd("NOOP").code == 250
    assert c.cmd("NOOP").code == 250           # the fourth since the delivery: an error
    assert c.reply(2).code == 421


# --- the line limit does not count the transparency dot ------------------

def test_dot_stuffed_line_of_998_octets_is_accepted(mw_factory, upstream):
    """RFC 5321 4.5.3.1.6: 1000 octets with CRLF "not counting the leading
    dot duplicated for transparency"; 550 5.6.0 before"""
    m = mw_factory(upstream)
    c = m.client()
    c.ehlo()
    line = b"." + b"a" * 997                      # 998 octets of content
    msg = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: t\r\n\r\n" + line + b"\r\n"
    r = c.transaction("a@example.org", ["b@example.net"], msg)   # sends ".." + 997 a
    assert r["final"].code == 250, r["final"]
    assert line + b"\r\n" in upstream.wait_messages(1)[0].content
    # one more octet of content is too long, stuffed or not
    for long_line in (b"." + b"a" * 998, b"a" * 999):
        msg = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: t\r\n\r\n" + long_line + b"\r\n"
        r = c.transaction("a@example.org", ["b@example.net"], msg)
        assert r["final"].code == 550, r["final"]


# --- MAIL AUTH= -----------------------------------------------------------

def test_mail_auth_parameter_taken_where_auth_is_offered(mw_factory, auth_upstream):
    """RFC 4954 5: AUTH= belongs to the AUTH extension the listener
    offers (Postfix's smtp_send_dummy_mail_auth sends AUTH=<>, Exim
    AUTH=<user>); it got 555, and the sender bounced.  It is checked and
    dropped: XCLIENT LOGIN= tells the MTA who authenticated."""
    m = auth_listener(mw_factory, auth_upstream)
    c = m.client()
    assert "AUTH PLAIN LOGIN" in c.ehlo().text.upper()
    # before AUTH (a client that authenticates only when it relays)
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(), mail_params="AUTH=<>")
    assert r["mail"].code == 250, r["mail"]
    assert r["final"].code == 250, r["final"]
    cred = base64.b64encode(b"\0alice\0" + USERS["alice"].encode()).decode()
    assert c.cmd("AUTH PLAIN " + cred).code == 235
    r = c.transaction("a@example.org", ["b@example.net"], make_msg(),
                      mail_params="AUTH=alice+40example.org SIZE=100")
    assert r["mail"].code == 250, r["mail"]
    assert r["final"].code == 250, r["final"]
    assert c.cmd("MAIL FROM:<a@example.org> AUTH=bad+zz").code == 501
    assert c.cmd("MAIL FROM:<a@example.org> AUTH").code == 501
    auth_upstream.wait_messages(2)
    sent = [opts for _, opts in auth_upstream.mails]
    assert sent and not any(o.upper().startswith("AUTH") for opts in sent for o in opts), sent


def test_mail_auth_parameter_refused_without_auth(mw_factory, upstream):
    """a listener that offers no AUTH: the parameter is still refused"""
    m = mw_factory(upstream)
    c = m.client()
    assert "AUTH" not in c.ehlo().text.upper()
    assert c.cmd("MAIL FROM:<a@example.org> AUTH=<>").code == 555


# --- a HELO name over 255 octets: whole, never cut -----------------------

def test_long_helo_reaches_the_mta_whole(mw_factory, raw_upstream):
    """cmd_helo() kept 255 octets: a 327-octet name (no host name:
    Postfix's reject_invalid_helo_hostname refuses it) reached the MTA
    as a valid 255-octet one in XCLIENT HELO= and the EHLO after it.  Now
    XCLIENT says [UNAVAILABLE] (Postfix takes no value over 255) and the
    EHLO carries the whole name, for the MTA to judge."""
    up = raw_upstream(caps=[b"PIPELINING", b"8BITMIME", b"XCLIENT NAME ADDR PORT PROTO HELO LOGIN"],
                      script={"OTHER": b"220 raw.upstream ESMTP\r\n"})      # XCLIENT: a new greeting
    m = mw_factory(up)
    c = m.client()
    helo = ".".join(["label%02d" % i for i in range(40)]) + ".example"     # 327 octets
    c.ehlo(helo)
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    wait_until(lambda: any(l.startswith(b"EHLO label00") for s in up.sessions for l in s), 3)
    lines = [l for s in up.sessions for l in s]
    sent = [l[5:].decode() for l in lines if l.startswith(b"EHLO label00")]
    assert sent and sent[-1] == helo, (len(sent[-1]) if sent else None, sent)
    xclient = [l for l in lines if l.startswith(b"XCLIENT") and b"HELO=" in l]
    assert xclient and b"HELO=[UNAVAILABLE]" in xclient[0], xclient
    # a name of 255 octets still goes in XCLIENT, whole
    c = m.client()
    helo255 = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 63
    assert len(helo255) == 255
    c.ehlo(helo255)
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    wait_until(lambda: any(helo255.encode() in l for s in up.sessions for l in s if l.startswith(b"XCLIENT")), 3)


# --- review rv-today4: what the client was told was taken, or may send later --

UPSTREAM_RCPT_LIMIT = 5    # the upstream's recipients per transaction (Exchange: 200)


@pytest.fixture
def limited_upstream(make_upstream):
    state = {"n": 0}

    def mail_reply(address):
        state["n"] = 0
        return None

    def rcpt_reply(address):
        state["n"] += 1
        if state["n"] > UPSTREAM_RCPT_LIMIT:
            return "452 4.5.3 Error: too many recipients"
        return "250 2.1.5 Ok"

    return make_upstream(rcpt_reply=rcpt_reply, mail_reply=mail_reply)


def test_upstream_recipient_limit_does_not_abort_the_message(mw_factory, limited_upstream):
    """An upstream whose recipient limit is below max_recipients answers
    452 4.5.3 past it: the client sends DATA for those accepted and the
    rest later (RFC 5321 4.5.3.1.10).  Counted as errors, 25 of them
    closed the session at max_errors (20): the accepted recipients were
    dropped too, and every retry met the same 421."""
    m = mw_factory(limited_upstream)
    c = m.client()
    c.ehlo()
    assert c.cmd("MAIL FROM:<list-bounces@lists.example.org>").code == 250
    c.send(b"".join(b"RCPT TO:<member%d@example.net>\r\n" % i for i in range(30)))
    codes = []
    for _ in range(30):
        try:
            codes.append(c.reply(3).code)
        except (ConnectionError, OSError):
            codes.append("closed")
            break
    assert codes == [250] * UPSTREAM_RCPT_LIMIT + [452] * (30 - UPSTREAM_RCPT_LIMIT), codes
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: list\r\n\r\nbody\r\n.\r\n")
    assert c.reply(5).code == 250
    assert len(limited_upstream.wait_messages(1)) == 1


@pytest.mark.parametrize("action", ["discard", "quarantine"])
def test_errors_forgiven_for_a_message_mailwarden_took(mw_factory, upstream, action):
    """A list server reusing its connection, one stale recipient a
    message, each message discarded or quarantined by mailwarden with
    250: a delivery as far as the client knows, so it forgives the
    errors as the upstream's 250 does (the third message was closed with
    421 at max_errors 3)."""
    m = mw_factory(upstream, opts=[mwlib.plugin_opt(), ("max_errors", "3")])
    c = m.client()
    c.ehlo()
    for n in range(5):
        msg = make_msg(subject="news %d" % n, headers=[("X-Example-Action", action)])
        r = c.transaction("news@lists.example.org", ["unknown%d@example.net" % n, "b@example.net"], msg)
        assert [x.code for x in r["rcpt"]] == [550, 250], (n, r)
        assert r["final"].code == 250, (n, r["final"])
    assert c.cmd("NOOP").code == 250
