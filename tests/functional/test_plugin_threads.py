"""test_plugin_threads.py - a plugin's own threads and the filter API
(include/mailwarden/filter.h).  mw_symbol, mw_verdict, the header edits,
mw_auth_result and mw_set_msgdata write the message's result without a
lock, into a ctx that ends with the filter's hooks: only the hook's own
thread may call them.  A call from a plugin's thread raced the scanner
thread's writes to the same arrays (memory corruption) and was taken;
now it is refused and logged once."""

import json
import os
import subprocess

from mwlib import make_msg, run_mw

THREADED_PLUGIN = r"""
#include <pthread.h>
#include <mailwarden/filter.h>

static void *from_thread(void *arg)
{
	struct mw_ctx *ctx = arg;

	mw_symbol(ctx, "FROM_PLUGIN_THREAD", 50.0, NULL);
	mw_verdict(ctx, MW_REJECT, "said from a plugin's thread");
	mw_header_add(ctx, "X-From-Thread", "yes");
	return NULL;
}

static void eom(struct mw_ctx *ctx)
{
	pthread_t t;

	/* the hook waits for its thread: the ctx lives meanwhile */
	if (pthread_create(&t, NULL, from_thread, ctx) == 0)
		pthread_join(t, NULL);
	mw_symbol(ctx, "FROM_HOOK", 0.5, NULL);
	mw_header_add(ctx, "X-From-Hook", "yes");
}

const struct mw_filter_ops mailwarden_filter = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "threaded",
	.on_eom = eom,
};
"""


def build_plugin(tmp_path, name, source):
    src, so = tmp_path / (name + ".c"), tmp_path / (name + ".so")
    src.write_text(source)
    include = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "include")
    subprocess.run(["cc", "-std=c11", "-shared", "-fPIC", "-I", include, "-o", str(so), str(src),
                    "-lpthread"], check=True)
    return so


def test_a_plugin_thread_cannot_write_the_result(tmp_path):
    so = build_plugin(tmp_path, "threaded", THREADED_PLUGIN)
    msgfile = tmp_path / "m.eml"
    msgfile.write_bytes(make_msg(subject="threads"))
    r = run_mw(["scan", "-o", "plugin=%s" % so, "-o", "filters=", "-o", "dns_client_name=no",
                str(msgfile)])
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    err = r.stderr.decode(errors="replace")
    names = [s["name"] for s in res["symbols"]]
    assert "FROM_HOOK" in names, res
    assert "FROM_PLUGIN_THREAD" not in names, res
    assert res["action"] != "reject", res
    edits = json.dumps(res.get("edits", res.get("header_edits", [])))
    assert "X-From-Hook" in edits and "X-From-Thread" not in edits, res
    assert ("filter=threaded mw_symbol called from a thread other than its hook's: ignored"
            in err), err
    assert err.count("called from a thread other than its hook's") == 1, err     # once per ctx
