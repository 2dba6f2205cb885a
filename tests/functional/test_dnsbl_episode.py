"""test_dnsbl_episode.py - review rv-today4 (session 20): a
blocked URI list (DBL answering 127.255.255.254 to every name, as Spamhaus
answers a public resolver) with a realistic mix of messages: some carry
links, some do not.  A message that asks the list nothing (no URI) ends
the list's trouble episode (tally_report -> trouble_step(had=0) ->
episode_end), so the next message with a link logs the "not a listing"
warning again, and a false "answers without refusal again" NOTICE is
logged in between: the list never answered without refusal, it was not
asked.  Expected (dnsbl20's claim): one warning while the block lasts.
FAILS on main (db8c651).

Run (from a checkout built with `make -j2 all`):
    cp /work/brief/s20/rv-today4/test_dnsbl_episode.py tests/functional/ && cd tests/functional && \
    MW_BUILD=$PWD/../../build MW_BIN=$PWD/../../build/mailwarden \
    MW_PLUGIN=$PWD/../../build/tests/example_plugin.so \
    /usr/bin/python3 -B -m pytest -q -p no:cacheprovider test_dnsbl_episode.py
"""

from dnsserver import dns_server  # noqa: F401 (fixture)
from mwlib import send_with_proxy_header
from test_dnsbl_evasion import dnsbl_behind_proxy

# the README's URIBL line (a "uri" list: messages without links ask it nothing);
# URIBL answers 127.0.0.1 to a blocked / over-quota resolver
URIBL = "multi.uribl.test uri &2=URIBL_BLACK:3 &4=URIBL_GREY:1 error=127.0.0.1"




def test_blocked_uri_list_logged_once_with_messages_without_links(dns_server, mw_factory, upstream):
    dns_server.add_zone("multi.uribl.test", ["@ A 127.0.0.1"], redirect=True)
    dns_server.start()
    m = dnsbl_behind_proxy(mw_factory, upstream, dns_server, URIBL)
    bodies = ["see http://shop%d.example/offer" % i if i % 3 != 2 else "lunch at noon?" for i in range(6)]
    for i, b in enumerate(bodies):
        send_with_proxy_header(m, "192.0.2.%d" % (10 + i), b)
    assert upstream.wait_messages(len(bodies))
    m.audit(len(bodies))
    log = m.stderr_text().splitlines()
    warn = [ln for ln in log if "not a listing" in ln]
    back = [ln for ln in log if "without refusal again" in ln]
    assert len(warn) == 1 and not back, "%d warnings, %d 'answers without refusal again' for %d messages " \
        "(%d with a link):\n%s" % (len(warn), len(back), len(bodies), sum("http" in b for b in bodies),
                                    "\n".join(warn + back))
