"""test_admin_setup.py - an administrator's first install (session 18
review): what `make install` lays down for the systemd unit, what the
daemon says of a configuration that scans nothing, and the README's
port-25 recipe with a real Postfix."""

import os
import re
import shutil
import signal
import smtplib
import subprocess

import pytest

import postfixlib
from mwlib import free_port, run_mw, wait_until

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MW_BUILD", "")


def build_datadir_arg():
    """DATADIR=the build's (build/datadir.stamp): an install with another
    PREFIX would compile the rules filter's default path anew into the
    binary the other tests run"""
    stamp = os.path.join(BUILD, "datadir.stamp")
    if not os.path.exists(stamp):
        return []
    with open(stamp) as f:
        return ["DATADIR=" + f.read().strip()]


def unit_exec_paths(unit):
    with open(unit) as f:
        lines = [l.strip() for l in f if l.startswith(("ExecStart", "ExecReload"))]
    return [l.split("=", 1)[1].split()[0] for l in lines]


@pytest.mark.skipif(os.path.realpath(BUILD) != os.path.realpath(os.path.join(SRC, "build")),
                    reason="installs from the plain build of this tree")
def test_make_install_unit_names_the_installed_binary_and_config(tmp_path):
    """PREFIX=/usr: the unit ran /usr/local/sbin/mailwarden (hard-coded),
    which that install does not make, and read /etc/mailwarden/mailwarden.conf,
    of which only mailwarden.conf.sample was installed.  Now the unit names
    $(PREFIX)/sbin, and the config is installed from the sample when none
    is there (an admin's own is never replaced)."""
    dest = tmp_path / "root"

    def install():
        r = subprocess.run(["make", "-s", "-C", SRC, "install", "DESTDIR=%s" % dest, "PREFIX=/usr"]
                           + build_datadir_arg(), capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr.decode()[-2000:]
    install()
    unit = dest / "usr/lib/systemd/system/mailwarden.service"
    paths = unit_exec_paths(unit)
    assert "/usr/sbin/mailwarden" in paths and "/usr/local/sbin/mailwarden" not in paths, paths
    for p in paths:
        if "mailwarden" in p:
            assert os.path.exists(str(dest) + p), p
    with open(unit) as f:
        text = f.read()
    assert "-c /etc/mailwarden/mailwarden.conf" in text
    conf = dest / "etc/mailwarden/mailwarden.conf"
    with open(os.path.join(SRC, "etc/mailwarden.conf"), "rb") as f:
        assert conf.read_bytes() == f.read()
    conf.write_bytes(b"# the admin's own\n")
    install()
    assert conf.read_bytes() == b"# the admin's own\n"


def test_a_config_that_scans_nothing_is_said_at_check_and_start(mw_factory, upstream):
    """filters empty and no plugin (the default, and the shipped sample):
    every message passed unscanned and nothing said so"""
    r = run_mw(["-t", "--listen", "127.0.0.1:%d" % free_port(), "--upstream", "127.0.0.1:1"])
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "filters is empty and no plugin is loaded: every message passes unscanned" in err, err
    r = run_mw(["-t", "-c", os.path.join(SRC, "etc", "mailwarden.conf")])
    assert "every message passes unscanned" in r.stderr.decode(), r.stderr
    r = run_mw(["-t", "--listen", "127.0.0.1:%d" % free_port(), "--upstream", "127.0.0.1:1",
                "-o", "filters=spf"])
    assert r.returncode == 0 and "unscanned" not in r.stderr.decode(), r.stderr
    m = mw_factory(upstream)
    assert "every message passes unscanned" in m.stderr_text(), m.stderr_tail()


def readme_port25_smtpd_options():
    """the -o name=value of the smtpd line in README's "As the listener on
    port 25" recipe"""
    with open(os.path.join(SRC, "README.md")) as f:
        text = f.read()
    block = text.split("**As the listener on port 25**", 1)[1].split("```", 2)[1]
    opts = {}
    for line in block.splitlines():
        for word in line.split():
            if "=" in word and not word.startswith("#") and line.strip().startswith("-o"):
                k, v = word.split("=", 1)
                opts[k] = v
    return opts


@pytest.mark.skipif(not postfixlib.available(), reason="needs root and Debian's postfix")
def test_port25_recipe_lets_more_than_50_sessions_through(mw_factory, make_upstream, tmp_path):
    """README "As the listener on port 25", without XCLIENT: with only
    mynetworks emptied as it said, Postfix's anvil counted every session
    from mailwarden as one client, and the 51st concurrent one got 451
    4.4.1 (Postfix's 421 "too many connections" behind it).  The recipe's
    smtpd options, read from the README, let 55 through."""
    opts = readme_port25_smtpd_options()
    assert opts.get("mynetworks") == "", opts
    sink = make_upstream()
    main = dict(opts, relay_domains="example.net")
    pf = postfixlib.Postfix(tmp_path / "pf", relayhost=sink.addr, main=main).start()
    clients, codes = [], []
    try:
        mw = mw_factory(pf.addr)
        for i in range(55):
            c = smtplib.SMTP("127.0.0.1", mw.port, timeout=30, source_address=("127.0.1.%d" % (i + 2), 0))
            c.ehlo("client%d.example.org" % i)
            codes.append(c.mail("a%d@example.org" % i))
            clients.append(c)
        assert all(code == 250 for code, _ in codes), [c for c in codes if c[0] != 250][:2]
    finally:
        for c in clients:
            try:
                c.close()
            except Exception:
                pass
        pf.stop()


def man_postfix_example_smtpd_options():
    """the -o name=value of the master.cf lines in mailwarden(8) EXAMPLES
    "Put it in front of Postfix" (none: the smtpd as it was)"""
    with open(os.path.join(SRC, "doc", "mailwarden.8")) as f:
        text = f.read()
    block = text.split("Put it in front of Postfix", 1)[1].split(".nf\n", 1)[1].split("\n.fi", 1)[0]
    opts = {}
    for line in block.replace("\\-", "-").splitlines():
        words = line.split()
        if words[:1] == ["-o"] and "=" in words[1]:
            k, v = words[1].split("=", 1)
            opts[k] = v
    return opts


def send_from(src, port):
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(src, 0)) as c:
        c.ehlo("client.example.org")
        try:
            return c.sendmail("spammer@example.org", ["victim@elsewhere.example"], b"Subject: x\r\n\r\nx\r\n")
        except smtplib.SMTPException as e:
            return e


@pytest.mark.skipif(not postfixlib.available(), reason="needs root and Debian's postfix")
def test_man_page_postfix_example_is_no_open_relay(mw_factory, make_upstream, tmp_path):
    """session 21 (rv-docs): mailwarden(8) EXAMPLES only moved Postfix's
    smtp service to a loopback port.  Postfix then saw every client as
    127.0.0.1, in mynetworks (Debian's default and this instance's):
    a client Postfix refuses when it comes directly (127.0.0.2, outside
    mynetworks) relayed to any domain through mailwarden.  The man page's
    smtpd options, read from it, are applied to that smtpd here."""
    sink = make_upstream()
    pf = postfixlib.Postfix(tmp_path / "pf", relayhost=sink.addr,
                            main=dict(man_postfix_example_smtpd_options())).start()
    try:
        direct = send_from("127.0.0.2", pf.port)
        assert isinstance(direct, smtplib.SMTPRecipientsRefused), direct
        mw = mw_factory(pf.addr)
        via = send_from("127.0.0.2", mw.port)
        assert isinstance(via, smtplib.SMTPRecipientsRefused), via
        assert not wait_until(lambda: len(sink.messages) >= 1, 3.0), "relayed for a stranger"
    finally:
        pf.stop()


@pytest.mark.skipif(os.path.realpath(BUILD) != os.path.realpath(os.path.join(SRC, "build")),
                    reason="installs from the plain build of this tree")
def test_rules_filter_reads_the_shipped_rules_where_make_install_put_them(tmp_path):
    """session 21 (rv-docs): make install (PREFIX=/usr/local) put the
    shipped rules in /usr/local/share/mailwarden/rules, and the rules
    filter with no rules_files read /usr/share/mailwarden/rules: the
    README's "filters = spf dkim dmarc rules" failed -t, naming a directory
    and no setting.  Now the build names the directory install uses."""
    dest = tmp_path / "root"
    r = subprocess.run(["make", "-s", "-C", SRC, "install", "DESTDIR=%s" % dest] + build_datadir_arg(),
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    found = [os.path.join(d, n)[len(str(dest)):] for d, subdirs, files in os.walk(dest)
             for n in subdirs if os.path.join(d, n).endswith("/share/mailwarden/rules")]
    assert len(found) == 1, found
    installed = found[0]
    assert os.listdir(str(dest) + installed), installed
    r = run_mw(["scan", "-o", "filters=rules", "-o", "rules_cache_dir=", "/dev/null"])
    err = r.stderr.decode()
    if os.path.isdir(installed):        # installed on this machine: loaded
        assert r.returncode == 0, err
    else:                               # else the error names that directory and the setting
        assert r.returncode != 0 and installed + ": No such file" in err, (installed, err)
        assert "set rules_files" in err, err


def _listener_pid(port):
    out = subprocess.run(["ss", "-Hltnp", "sport = :%d" % port], capture_output=True, text=True).stdout
    pids = {int(p) for p in re.findall(r"pid=(\d+)", out)}
    return min(pids) if pids else None      # the master made the socket first


def test_daemonized_with_log_stderr_says_where_the_log_goes(tmp_path):
    """session 21 (rv-docs): `mailwarden -c FILE` (no -f) with the default
    log = stderr detached with its stderr on /dev/null and its log switched
    to syslog, saying nothing: an admin looked for the log on the terminal
    (and without a syslog daemon every line was lost unsaid).  Before it
    detaches it now says where the log goes."""
    port = free_port()
    args = ["--listen", "127.0.0.1:%d" % port, "--upstream", "127.0.0.1:1",
            "-o", "audit_log=%s" % (tmp_path / "audit.log"), "-o", "quarantine_dir=%s" % (tmp_path / "q"),
            "-o", "stats_file=%s" % (tmp_path / "stats"), "-o", "dns_forwarder=127.0.0.1@%d" % free_port(),
            "-o", "shutdown_timeout=1s"]
    r = run_mw(args)
    pid = None
    try:
        assert r.returncode == 0, r.stderr
        assert wait_until(lambda: _listener_pid(port) is not None, 10.0)
        pid = _listener_pid(port)
        err = r.stderr.decode()
        assert "log = stderr, and the daemon detaches (no -f): logging to syslog (facility mail)" in err, err
        if not os.path.exists("/dev/log"):
            assert "no syslog daemon listens on /dev/log" in err, err
    finally:
        pid = pid or _listener_pid(port)
        if pid:
            os.kill(pid, signal.SIGTERM)
            assert wait_until(lambda: not os.path.exists("/proc/%d" % pid), 15.0)


def test_check_warns_of_a_milter_beside_a_listener_on_port_25():
    """session 21 (rv-docs): a milter site following "Milter front end"
    sets milter_listen in the installed config, the sample, which keeps
    [listener mx] listen = *:25: Postfix's port.  -t said OK; whichever of
    the two started second could not bind port 25.  -t warns now (only
    checks: nothing binds here)."""
    sample = os.path.join(SRC, "etc", "mailwarden.conf")
    base = ["-t", "-c", sample, "-o", "dns_forwarder=127.0.0.1@9"]
    r = run_mw(base + ["-o", "milter_listen=inet:%d@127.0.0.1" % free_port()])
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "milter_listen is set and [listener mx] listens on *:25" in err, err
    assert "removes the listener" in err
    # the proxy alone on 25, or the milter beside a listener elsewhere: no warning
    r = run_mw(base)
    assert r.returncode == 0 and "listens on *:25" not in r.stderr.decode(), r.stderr
    r = run_mw(base + ["-o", "milter_listen=inet:%d@127.0.0.1" % free_port(),
                       "-o", "listener.mx.listen=127.0.0.1:%d" % free_port()])
    assert r.returncode == 0 and "port 25" not in r.stderr.decode(), r.stderr


@pytest.mark.skipif(os.path.realpath(BUILD) != os.path.realpath(os.path.join(SRC, "build")),
                    reason="installs from the plain build of this tree")
@pytest.mark.skipif(not (shutil.which("systemd-sysusers") and shutil.which("systemd-tmpfiles")),
                    reason="needs systemd-sysusers and systemd-tmpfiles")
def test_make_install_provides_the_user_and_directories_the_unit_needs(tmp_path):
    """session 21 (rv-docs): nothing made the mailwarden user, nor
    /var/lib/mailwarden and /var/log/mailwarden, which the unit's
    ReadWritePaths= needs to start.  make install ships sysusers.d and
    tmpfiles.d files; systemd makes them (here in the install root)."""
    dest = tmp_path / "root"
    r = subprocess.run(["make", "-s", "-C", SRC, "install", "DESTDIR=%s" % dest] + build_datadir_arg(),
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    sysusers = [os.path.join(d, n) for d, _, files in os.walk(dest) for n in files
                if d.endswith("/sysusers.d") and n == "mailwarden.conf"]
    tmpfiles = [os.path.join(d, n) for d, _, files in os.walk(dest) for n in files
                if d.endswith("/tmpfiles.d") and n == "mailwarden.conf"]
    assert len(sysusers) == 1 and len(tmpfiles) == 1, (sysusers, tmpfiles)
    os.makedirs(dest / "etc", exist_ok=True)
    r = subprocess.run(["systemd-sysusers", "--root=%s" % dest, sysusers[0]], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    users = {l.split(":")[0]: l.split(":") for l in (dest / "etc" / "passwd").read_text().splitlines()}
    assert "mailwarden" in users, users
    uid = int(users["mailwarden"][2])
    r = subprocess.run(["systemd-tmpfiles", "--root=%s" % dest, "--create", tmpfiles[0]],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    unit = [os.path.join(d, n) for d, _, files in os.walk(dest) for n in files if n == "mailwarden.service"]
    with open(unit[0]) as f:
        rw = [l.split("=", 1)[1].split() for l in f if l.startswith("ReadWritePaths=")][0]
    assert rw, unit
    for p in rw:
        st = os.stat(str(dest) + p)
        assert st.st_uid == uid and (st.st_mode & 0o777) == 0o750, (p, st)
    # a site's existing directories (another user =, another mode) are left
    # as they are, at an upgrade's install and at every boot (review
    # rv-today5: a plain "d" line gave them to the new mailwarden user)
    for p in rw:
        os.chown(str(dest) + p, 4242, 4242)
        os.chmod(str(dest) + p, 0o700)
    r = subprocess.run(["systemd-tmpfiles", "--root=%s" % dest, "--create", tmpfiles[0]],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for p in rw:
        st = os.stat(str(dest) + p)
        assert st.st_uid == 4242 and (st.st_mode & 0o777) == 0o700, (p, st)
