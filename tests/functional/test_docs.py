"""test_docs.py - what the admin reads against what the program does:
--help against mailwarden(8)'s synopsis, and the README's table of
defaults against the defaults in the code (-t -v), so that they cannot
drift apart again (session 18: --help lacked learn --rebuild, scan
--output and --direction; the README gave outbound_reject_score 15, the
code 10)."""
import os
import re

from mwlib import run_mw

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


OPTION = re.compile(r"(?<![\w-])(--?[a-z][a-z-]*)")


def synopsis_options():
    """{command: options} of mailwarden(8)'s SYNOPSIS ("" the daemon, "-t",
    "scan", ...), each form of a command put together"""
    man = read("doc/mailwarden.8")
    syn = man.split(".SH SYNOPSIS", 1)[1].split(".SH ", 1)[0]
    forms = {}
    for block in syn.split(".br"):
        text = block.replace("\\-", "-").replace("\\&", "")
        m = re.search(r"^\.B mailwarden ?(\S*)", text, re.M)
        assert m, block
        forms.setdefault(m.group(1), set()).update(OPTION.findall(text.split("\n", 2)[-1]))
    return forms


def help_options():
    p = run_mw(["--help"])
    assert p.returncode == 0
    forms, cmd = {}, None
    for line in p.stdout.decode().splitlines():
        m = re.match(r"^(?:usage:)?\s+mailwarden ?(\S*)", line)
        if m:
            cmd = m.group(1) if not m.group(1).startswith("[") else ""
            line = line[m.end() if cmd else m.start(1):]
        forms.setdefault(cmd, set()).update(OPTION.findall(line))
    return forms


def test_help_shows_every_option_of_the_man_page():
    man, shown = synopsis_options(), help_options()
    assert set(man) == set(shown), (sorted(man), sorted(shown))
    missing = {cmd: sorted(opts - shown[cmd]) for cmd, opts in man.items() if opts - shown[cmd]}
    assert not missing, "--help lacks what mailwarden(8) gives: %r" % missing


def norm(v):
    v = re.sub(r"\(.*?\)", "", v).strip()
    if v == "off":
        v = "0"
    n = v[:-1] if v.endswith("s") and re.match(r"^[0-9.]+s$", v) else v
    try:
        return float(n)
    except ValueError:
        return v


def readme_defaults():
    """[(setting, default)] of the README's Configuration reference table"""
    readme = read("README.md")
    section = readme.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("setting", "---") or not cells[1] or "[listener" in cells[0]:
            continue
        names = re.findall(r"`([a-z_*]+)`", cells[0])
        if any("*" in n for n in names):
            continue
        names = [names[0].split("_")[0] + n if n.startswith("_") else n for n in names]
        raw = re.sub(r"\(.*?\)", "", cells[1])
        values = [v.strip() for v in re.split(r" / |,", raw)]
        assert len(values) == len(names), "README row with %d settings and %d defaults: %s" % (
            len(names), len(values), line)
        rows += list(zip(names, values))
        # "and the same for `outbound_`": those too, with the same defaults
        for other in re.findall(r"the same for `([a-z]+_)`", cells[2]):
            rows += [(other + n.split("_", 1)[1], v) for n, v in zip(names, values)]
    return rows


def test_readme_defaults_are_the_code_defaults():
    p = run_mw(["-t", "-v"])
    assert p.returncode == 0, p.stderr
    code = dict(re.findall(r"^([a-z0-9_]+) = ?(.*)$", p.stdout.decode(), re.M))
    rows = readme_defaults()
    assert len(rows) > 15, rows
    wrong = [(n, v, code.get(n)) for n, v in rows if n not in code or norm(v) != norm(code[n])]
    assert not wrong, "README default differs from the code's (setting, README, code): %r" % wrong


def man_block(page, marker):
    """the lines of the first .nf/.fi block after marker in doc/PAGE,
    with the roff escapes undone (as man shows them)"""
    text = read("doc/" + page).split(marker, 1)[1]
    block = text.split(".nf\n", 1)[1].split("\n.fi", 1)[0]
    return [l.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "") for l in block.splitlines()]


def readme_block(marker):
    """the lines of the first fenced block after marker in README.md"""
    return read("README.md").split(marker, 1)[1].split("```", 2)[1].strip("\n").splitlines()


PORT25 = "**As the listener on port 25**"


def test_man_page_postfix_example_is_the_readme_recipe():
    """session 21 (rv-docs): mailwarden(8) EXAMPLES moved Postfix's smtp
    service to a loopback port and said nothing more: no -o mynetworks=,
    so Postfix, seeing every client as 127.0.0.1, relayed for everyone
    (test_admin_setup.py shows it with a real Postfix); nor the limits and
    header rewriting lines of the README's recipe"""
    man = [" ".join(l.split()) for l in man_block("mailwarden.8", "Put it in front of Postfix")]
    readme = [" ".join(l.split()) for l in readme_block(PORT25)]
    assert "-o mynetworks=" in man, man
    assert man == readme, (man, readme)


def _upstream(lines):
    return [l.split("=", 1)[1].strip() for l in lines if re.match(r"^upstream\s*=", l)]


def test_one_upstream_port_for_postfix_everywhere():
    """the sample, the README and both man pages sent mailwarden to Postfix
    on 127.0.0.1:10025, 127.0.0.1:2525 and 10025: one port, the README's"""
    readme = _upstream(readme_block(PORT25))
    assert readme == ["127.0.0.1:2525"], readme
    sample = read("etc/mailwarden.conf").split("[listener mx]", 1)[1]
    assert _upstream(sample.splitlines())[:1] == readme
    assert _upstream(man_block("mailwarden.8", "Put it in front of Postfix")) == readme
    assert _upstream(man_block("mailwarden.conf.5", ".SH EXAMPLE"))[:1] == readme


def test_main_cf_snippets_have_no_end_of_line_comments():
    """session 21 (rv-docs): main.cf has no end-of-line comments; the
    README's milter lines "non_smtpd_milters = inet:127.0.0.1:10031  # local
    submission too" were a list of milters "#", "local", ... for Postfix,
    and local submission failed.  Every fenced README line of the form
    "name = value" with a Postfix parameter name (lowercase, no section)
    carries no "#" after the value."""
    readme = read("README.md")
    bad = []
    for block in readme.split("```")[1::2]:
        if "main.cf" not in block and "milter" not in block:
            continue
        for line in block.splitlines():
            m = re.match(r"^([a-z_]+_milters|milter_[a-z_]+|smtpd_[a-z_]+|[a-z_]+_maps)\s*=\s*(.*)$", line)
            if m and "#" in m.group(2):
                bad.append(line)
    assert not bad, bad


def test_demo_installs_no_test_peer_service():
    """session 21 (rv-docs): make demo ran scripts/install-deps with the
    whole list of make check: Postfix, HAProxy, Redis, clamd and freshclam,
    spamd, unbound on :53, nftables, npm, services of their own on an
    admin's machine.  make demo now installs the demo group: the build
    and the demo's tools."""
    import subprocess
    mk = subprocess.run(["make", "-n", "-C", ROOT, "demo"], capture_output=True, text=True).stdout
    calls = [l.split() for l in mk.splitlines() if "install-deps" in l]
    assert calls and all(c[-1] == "demo" for c in calls), calls
    demo = subprocess.run(["sh", os.path.join(ROOT, "scripts", "install-deps"), "--list", "demo"],
                          capture_output=True, text=True, check=True).stdout.split()
    full = subprocess.run(["sh", os.path.join(ROOT, "scripts", "install-deps"), "--list"],
                          capture_output=True, text=True, check=True).stdout.split()
    services = {"postfix", "haproxy", "redis-server", "clamav-daemon", "clamav-freshclam", "spamd",
                "unbound", "nftables", "npm"}
    assert not services & set(demo), sorted(services & set(demo))
    assert {"swaks", "python3-aiosmtpd", "build-essential", "libclamav-dev"} <= set(demo), demo
    assert set(demo) < set(full) and {"postfix", "npm", "clamav-daemon"} <= set(full)
