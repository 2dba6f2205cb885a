#!/bin/bash
# tls.sh - the TLS benchmark (issue 3): STARTTLS on the client leg, 10 KB
# messages, concurrency 10 and 100.  A benchmark, not a test: it prints
# figures; it fails only when something does not work.
#
# Postfix's smtp-source and smtp-sink speak no TLS, so the client here is
# tests/bench/tls_source.c (built by this script: threads, blocking I/O,
# MAIL/RCPT/DATA pipelined, the same 10 KB message), and in one run it
# measures messages/s for
#   plain       tls_source       -> smtp-sink            (no TLS: the ceiling)
#   postfix     tls_source -T    -> Postfix smtpd, STARTTLS, mail discarded
#                                   (queue in /tmp; the real MTA doing TLS)
#   mailwarden  tls_source -T    -> mailwarden (STARTTLS, example plugin)
#                                   -> smtp-sink (plaintext)
# and prints mailwarden/postfix and mailwarden/plain.  Each TLS session
# does a full handshake (no resumption): with 1 message per session that
# is the worst case; 20 per session shows the bulk cost.
#
# Then it holds BENCH_TLS_IDLE (default 2000; 0 skips) idle implicit-TLS
# sessions on a fresh mailwarden and prints the proxy process's RSS/PSS
# growth per session (idle_tls.py).
#
# Environment: MW_BIN, MW_PLUGIN as run.sh; BENCH_TLS_MESSAGES (default
# 3000 per case), BENCH_CONCURRENCY (default "10 100"), BENCH_PER_SESSION
# (default "1 20"), BENCH_SIZE (default 10240).  Needs root for Postfix.
# Only loopback addresses are used; everything started here is stopped.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MW_BIN=${MW_BIN:-$ROOT/build/mailwarden}
MW_PLUGIN=${MW_PLUGIN:-$ROOT/build/tests/example_plugin.so}
MESSAGES=${BENCH_TLS_MESSAGES:-3000}
CONCS=${BENCH_CONCURRENCY:-"10 100"}
PERSESS=${BENCH_PER_SESSION:-"1 20"}
SIZE=${BENCH_SIZE:-10240}
IDLE=${BENCH_TLS_IDLE:-2000}
PY=/usr/bin/python3
SMTP_SINK=/usr/sbin/smtp-sink

die() { echo "bench-tls: $*" >&2; exit 1; }
[ -x "$MW_BIN" ] && [ -f "$MW_PLUGIN" ] || die "build first (make)"
[ -x "$SMTP_SINK" ] || die "smtp-sink missing"
[ "$(id -u)" = 0 ] || die "needs root (Postfix)"

TMP=$(mktemp -d /tmp/mw-bench-tls.XXXXXX) || die mktemp
PIDS=""
PF_CONF=""
PF_DIR=""
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	if [ -n "$PF_CONF" ]; then
		/usr/sbin/postfix -c "$PF_CONF" stop >/dev/null 2>&1
		sleep 1
		rm -rf "$PF_DIR"
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
ulimit -n "$(ulimit -Hn)" 2>/dev/null

cc -std=c11 -O2 -o "$TMP/tls_source" "$HERE/tls_source.c" -lssl -lcrypto -lpthread || die "cannot build tls_source"

# one self-signed certificate for both servers
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench.example \
	-keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1 || die openssl
chmod 644 "$TMP/key.pem"
chmod 755 "$TMP"

. "$HERE/benchlib.sh"
read -r SINK_PORT MW_PORT IDLE_PORT <<<"$(free_ports 3)"

$SMTP_SINK -u nobody -m 2000 -t 300 127.0.0.1:"$SINK_PORT" 4096 >"$TMP/sink.log" 2>&1 &
PIDS="$PIDS $!"
wait_listen "$SINK_PORT" || die "smtp-sink did not start"

"$MW_BIN" -f --listen 127.0.0.1:"$MW_PORT" --upstream 127.0.0.1:"$SINK_PORT" \
	-o plugin="$MW_PLUGIN" -o audit_log="$TMP/audit.log" -o stats_file="$TMP/stats" -o quarantine_dir="$TMP" \
	-o max_connections=20000 -o max_connections_per_ip=20000 -o log_level=warning \
	-o listener.default.tls=starttls -o listener.default.tls_cert="$TMP/cert.pem" \
	-o listener.default.tls_key="$TMP/key.pem" >"$TMP/mw.log" 2>&1 &
PIDS="$PIDS $!"
wait_listen "$MW_PORT" || { cat "$TMP/mw.log"; die "mailwarden did not start"; }

# Postfix with STARTTLS, discarding what it accepts (postfixlib.py)
read -r PF_PORT PF_CONF PF_DIR <<EOF
$(cd "$ROOT/tests/functional" && "$PY" - "$TMP" <<'PYEOF'
import sys
import postfixlib
tmp = sys.argv[1]
pf = postfixlib.Postfix(tmp + "/pf", relayhost="127.0.0.1:9", main={
    "mynetworks": "127.0.0.0/8", "default_transport": "discard:", "relay_transport": "discard:",
    "smtpd_tls_cert_file": tmp + "/cert.pem", "smtpd_tls_key_file": tmp + "/key.pem",
    "smtpd_tls_security_level": "may", "in_flow_delay": "0", "default_process_limit": "200",
    "smtpd_client_connection_count_limit": "0", "smtpd_client_connection_rate_limit": "0",
    "smtpd_client_message_rate_limit": "0", "smtpd_tls_session_cache_database": "",
})
pf.start()
print(pf.port, pf.conf, pf.dir)
PYEOF
)
EOF
[ -n "$PF_CONF" ] || die "postfix did not start"

run() {  # run PORT TLS CONC PERSESS -> rate
	local out
	out=$("$TMP/tls_source" $2 -c "$3" -n "$MESSAGES" -m "$4" -s "$SIZE" 127.0.0.1:"$1") ||
		{ echo "bench-tls: tls_source failed: $out" >&2; echo 0; return; }
	echo "$out" | sed -n 's/.*rate=\([0-9.]*\).*/\1/p'
}

echo "TLS benchmark: $MESSAGES messages of $SIZE bytes per case; messages/s"
printf "%-6s %-9s %10s %10s %12s %14s %12s\n" conc msgs/sess plain postfix-tls mailwarden-tls "mw/postfix" "mw/plain"
for c in $CONCS; do
	for m in $PERSESS; do
		plain=$(run "$SINK_PORT" "" "$c" "$m")
		pf=$(run "$PF_PORT" -T "$c" "$m")
		mw=$(run "$MW_PORT" -T "$c" "$m")
		printf "%-6s %-9s %10s %10s %12s %14s %12s\n" "$c" "$m" "$plain" "$pf" "$mw" \
			"$(awk -v a="$mw" -v b="$pf" 'BEGIN { printf (b > 0 ? "%.2fx" : "-"), a / b }')" \
			"$(awk -v a="$mw" -v b="$plain" 'BEGIN { printf (b > 0 ? "%.2fx" : "-"), a / b }')"
	done
done

if [ "$IDLE" -gt 0 ]; then
	"$MW_BIN" -f --listen 127.0.0.1:"$IDLE_PORT" --upstream 127.0.0.1:"$SINK_PORT" \
		-o audit_log="$TMP/audit-idle.log" -o stats_file="$TMP/stats-idle" -o quarantine_dir="$TMP" -o proxy_threads=1 \
		-o max_connections=20000 -o max_connections_per_ip=20000 -o log_level=warning \
		-o listener.default.tls=implicit -o listener.default.tls_cert="$TMP/cert.pem" \
		-o listener.default.tls_key="$TMP/key.pem" >"$TMP/mw-idle.log" 2>&1 &
	IDLE_MW=$!
	PIDS="$PIDS $IDLE_MW"
	wait_listen "$IDLE_PORT" || die "idle mailwarden did not start"
	# the proxy process: the child whose title says so
	PROXY_PID=""
	for _ in $(seq 50); do
		for c in $(pgrep -P "$IDLE_MW"); do
			tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null | grep -q proxy && PROXY_PID=$c
		done
		[ -n "$PROXY_PID" ] && break
		sleep 0.1
	done
	[ -n "$PROXY_PID" ] || die "cannot find the proxy process"
	echo "idle implicit-TLS sessions (one proxy loop): $("$PY" "$HERE/idle_tls.py" 127.0.0.1 "$IDLE_PORT" "$IDLE" "$PROXY_PID")"
fi
