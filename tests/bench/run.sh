#!/bin/bash
# run.sh - mailwarden benchmark: throughput against a direct path and a blind
# TCP relay, and the proxy's memory per idle session.  A benchmark, not a
# test: it prints figures and whether the targets are met; it fails only when
# something does not work (a peer does not start, smtp-source sees an error).
#
# In one run, with Postfix's smtp-source as the client and smtp-sink as the
# upstream, it measures messages/s for
#   direct      smtp-source -> smtp-sink
#   relay       smtp-source -> HAProxy (mode tcp, copies bytes) -> smtp-sink
#   mailwarden  smtp-source -> mailwarden + example plugin -> smtp-sink
#               (upstream_xclient = no: like the relay, it does not tell
#               the sink who the client is; the ratios use this row)
#   mw+xclient  the same with the default upstream_xclient = yes: smtp-sink
#               offers XCLIENT, so each upstream session costs two more
#               round trips (XCLIENT, its new 220 greeting, EHLO again).
#               A Postfix upstream offers XCLIENT only to the hosts in its
#               smtpd_authorized_xclient_hosts.  Shown for information.
# with 10 KB messages, 1 and 100 messages per session, 1, 10 and 100
# concurrent sessions; then it holds 5,000 idle sessions on a fresh mailwarden
# and prints the proxy process's RSS/PSS growth per session.
#
# Targets (issue 2): mailwarden >= 0.8x the relay at concurrency 10 and 100;
# <= 16 KiB per idle session.
#
# Time budget: each case sends BENCH_MESSAGES messages (default 20000) unless
# that would take longer than BENCH_SECONDS (default 10): a short pilot run
# measures the rate, then the measured run is sized to about BENCH_SECONDS.
# The table shows the count actually sent.  By default the whole run takes
# 3-6 minutes.  Rates come from wall time of the measured run only.
#
# "100 messages per session" is done by CONC parallel workers, each running
# "smtp-source -d -s 1 -m 100" (one session, 100 messages) as many times as
# its share needs; counts are rounded up to whole sessions.
#
# Environment:
#   MW_BIN              mailwarden binary   (default: <repo>/build/mailwarden)
#   MW_PLUGIN           example plugin      (default: <repo>/build/tests/example_plugin.so)
#   BENCH_MESSAGES      max messages per case (default 20000)
#   BENCH_SECONDS       time budget per case, seconds (default 10)
#   BENCH_CONCURRENCY   list of concurrencies (default "1 10 100")
#   BENCH_PER_SESSION   list of messages per session (default "1 100")
#   BENCH_IDLE          idle sessions for the memory test (default 5000; 0 skips)
#   BENCH_SIZE          message payload bytes (default 10240)
#   BENCH_ROUNDS        repeat the whole table, keep each cell's best (default 1);
#                       for a machine that is busy with other work
#   BENCH_HAPROXY_THREADS  HAProxy nbthread (default: HAProxy's own, = CPUs)
#   BENCH_NO_MAILWARDEN=1  run only direct and relay (while the daemon is not built)
#   BENCH_MW_OPTS       extra mailwarden options for the throughput runs
#                       (e.g. "-o proxy_threads=2")
#   BENCH_XCLIENT=0     skip the mw+xclient row
#
# Only loopback addresses are used.  Every process started here is stopped
# on exit.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MW_BIN=${MW_BIN:-$ROOT/build/mailwarden}
MW_PLUGIN=${MW_PLUGIN:-$ROOT/build/tests/example_plugin.so}
MESSAGES=${BENCH_MESSAGES:-20000}
SECONDS_BUDGET=${BENCH_SECONDS:-10}
CONCS=${BENCH_CONCURRENCY:-"1 10 100"}
PERSESS=${BENCH_PER_SESSION:-"1 100"}
IDLE=${BENCH_IDLE:-5000}
SIZE=${BENCH_SIZE:-10240}
ROUNDS=${BENCH_ROUNDS:-1}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
SMTP_SOURCE=/usr/sbin/smtp-source
SMTP_SINK=/usr/sbin/smtp-sink
HAPROXY=/usr/sbin/haproxy

die() { echo "bench: $*" >&2; exit 1; }

for t in "$SMTP_SOURCE" "$SMTP_SINK" "$HAPROXY"; do
	[ -x "$t" ] || die "$t missing (make deps installs postfix and haproxy)"
done
USE_MW=1
USE_XC=${BENCH_XCLIENT:-1}
if [ "${BENCH_NO_MAILWARDEN:-0}" = 1 ]; then
	USE_MW=0
	USE_XC=0
elif [ ! -x "$MW_BIN" ] || [ ! -f "$MW_PLUGIN" ]; then
	die "$MW_BIN or $MW_PLUGIN missing: run make (or set BENCH_NO_MAILWARDEN=1)"
fi

# --- processes and cleanup ----------------------------------------------
TMP=$(mktemp -d /tmp/mw-bench.XXXXXX) || die "mktemp"
PIDS=""
# stop_all - SIGTERM to every process started here and to their children
# (mailwarden's proxy and scanner), SIGKILL to what is left after 3 s.
stop_all() {
	local p all="" left
	for p in $PIDS; do
		kill -0 "$p" 2>/dev/null || continue
		all="$all $p $(pgrep -P "$p" | tr '\n' ' ')"
		kill "$p" 2>/dev/null
	done
	for _ in $(seq 30); do
		left=""
		for p in $all; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
		[ -z "$left" ] && break
		sleep 0.1
	done
	for p in $left; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	PIDS=""
}
cleanup() {
	stop_all
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Raise the descriptor limit for everything started below (5,000 idle
# sessions, 100 concurrent proxied sessions = 200 sockets, ...).
ulimit -n "$(ulimit -Hn)" 2>/dev/null
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((IDLE + 200)) ] ||
	die "ulimit -n is $(ulimit -n); need $((IDLE + 200)) for BENCH_IDLE=$IDLE"

. "$HERE/benchlib.sh"

now() { date +%s.%N; }

# --- peers ----------------------------------------------------------------
read -r SINK_PORT RELAY_PORT MW_PORT IDLE_PORT XC_PORT <<EOF
$(free_ports 5)
EOF

SINK_USER=""
[ "$(id -u)" = 0 ] && SINK_USER="-u nobody"
# -m: concurrent sessions it serves (default 256 would queue the 100-session cases
# plus the proxy's upstream sessions behind each other).
$SMTP_SINK $SINK_USER -m 2000 -t 300 127.0.0.1:"$SINK_PORT" 4096 \
	>"$TMP/sink.log" 2>&1 &
SINK_PID=$!; PIDS="$PIDS $SINK_PID"
wait_listen "$SINK_PORT" "$SINK_PID" || { cat "$TMP/sink.log"; die "smtp-sink did not start"; }

NBT=""
[ -n "${BENCH_HAPROXY_THREADS:-}" ] && NBT="	nbthread ${BENCH_HAPROXY_THREADS}"
cat >"$TMP/haproxy.cfg" <<EOF
# written by tests/bench/run.sh: a blind TCP relay, no logging
global
	maxconn 4096
$NBT
defaults
	mode tcp
	timeout connect 5s
	timeout client 300s
	timeout server 300s
frontend bench
	bind 127.0.0.1:$RELAY_PORT
	maxconn 4096
	default_backend sink
backend sink
	server sink 127.0.0.1:$SINK_PORT
EOF
$HAPROXY -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
HAPROXY_PID=$!; PIDS="$PIDS $HAPROXY_PID"
wait_listen "$RELAY_PORT" "$HAPROXY_PID" || { cat "$TMP/haproxy.log"; die "haproxy did not start"; }

# start_mailwarden PORT TAG [extra -o ...] - sets MW_PID.
start_mailwarden() {
	local port=$1 tag=$2
	shift 2
	mkdir -p "$TMP/$tag/q"
	"$MW_BIN" -f --listen 127.0.0.1:"$port" --upstream 127.0.0.1:"$SINK_PORT" \
		-o plugin="$MW_PLUGIN" -o audit_log="$TMP/$tag/audit.log" -o stats_file="$TMP/$tag/stats" \
		-o quarantine_dir="$TMP/$tag/q" -o max_connections=20000 \
		-o max_connections_per_ip=20000 -o log_level=warning "$@" \
		>"$TMP/$tag/mailwarden.log" 2>&1 &
	MW_PID=$!; PIDS="$PIDS $MW_PID"
	if ! wait_listen "$port" "$MW_PID"; then
		cat "$TMP/$tag/mailwarden.log" >&2
		die "mailwarden did not start"
	fi
}

if [ $USE_MW = 1 ]; then
	# shellcheck disable=SC2086
	start_mailwarden "$MW_PORT" tput -o listener.default.upstream_xclient=no ${BENCH_MW_OPTS:-}
	MW_TPUT_PID=$MW_PID
fi
if [ "$USE_XC" = 1 ]; then
	# shellcheck disable=SC2086
	start_mailwarden "$XC_PORT" tput-xc ${BENCH_MW_OPTS:-}
	MW_XC_PID=$MW_PID
fi

# --- one case -------------------------------------------------------------
# send PORT PERSESS CONC N - sends N messages, prints "N SECONDS" of wall
# time; returns non-zero if smtp-source reported an error.
# -S: a Subject, so that the example plugin's Subject check has work to do.
SRC_ARGS=(-l "$SIZE" -M bench.example -f sender@bench.example -t rcpt@bench.example
	-S "mailwarden benchmark message")
send() {
	local port=$1 per=$2 conc=$3 n=$4 t0 t1 rc=0 w sessions share extra k wp=""
	rm -f "$TMP"/src.*
	if [ "$per" = 1 ]; then
		t0=$(now)
		$SMTP_SOURCE -s "$conc" -m "$n" "${SRC_ARGS[@]}" 127.0.0.1:"$port" \
			2>"$TMP/src.err" || rc=1
		t1=$(now)
	else
		sessions=$(( (n + per - 1) / per ))
		n=$((sessions * per))
		if [ "$conc" -gt "$sessions" ]; then
			echo "bench: only $sessions sessions of $per: concurrency $sessions, not $conc" >&2
			conc=$sessions
		fi
		share=$((sessions / conc)); extra=$((sessions % conc))
		t0=$(now)
		for w in $(seq "$conc"); do
			k=$share; [ "$w" -le "$extra" ] && k=$((k + 1))
			(
				i=0
				while [ $i -lt $k ]; do
					$SMTP_SOURCE -d -s 1 -m "$per" "${SRC_ARGS[@]}" \
						127.0.0.1:"$port" 2>>"$TMP/src.err.$w" ||
						{ echo fail >"$TMP/src.fail.$w"; exit 1; }
					i=$((i + 1))
				done
			) &
			wp="$wp $!"
		done
		for w in $wp; do wait "$w"; done
		t1=$(now)
		if ls "$TMP"/src.fail.* >/dev/null 2>&1; then rc=1; fi
		cat "$TMP"/src.err.* >"$TMP/src.err" 2>/dev/null
	fi
	[ $rc = 0 ] && echo "$n" >>"$TMP/sent.$port"
	if [ $rc != 0 ]; then
		echo "bench: smtp-source failed (port $port, $per/session, conc $conc, $n msgs):" >&2
		head -5 "$TMP/src.err" >&2
	fi
	echo "$n $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
	return $rc
}

# measure PORT PERSESS CONC - pilot, then a run sized to the budget; prints
# "N SECONDS RATE" of the measured run or "FAIL".
measure() {
	local port=$1 per=$2 conc=$3 pn out n t target
	if [ "$per" = 1 ]; then pn=$((conc * 20)); [ $pn -lt 200 ] && pn=200
	else pn=$((per * conc)); fi
	[ $pn -gt "$MESSAGES" ] && pn=$MESSAGES
	out=$(send "$port" "$per" "$conc" "$pn") || { echo FAIL; return; }
	read -r n t <<<"$out"
	if [ "$n" -lt "$MESSAGES" ] && awk -v t="$t" -v b="$SECONDS_BUDGET" 'BEGIN { exit !(t < b) }'; then
		target=$(awk -v n="$n" -v t="$t" -v b="$SECONDS_BUDGET" -v m="$MESSAGES" \
			'BEGIN { if (t < 0.001) t = 0.001; x = int(n / t * b); if (x > m) x = m; if (x < n) x = n; print x }')
		out=$(send "$port" "$per" "$conc" "$target") || { echo FAIL; return; }
		read -r n t <<<"$out"
	fi
	awk -v n="$n" -v t="$t" 'BEGIN { if (t < 0.001) t = 0.001; printf "%d %.3f %.0f\n", n, t, n / t }'
}

# --- header -----------------------------------------------------------------
echo "== mailwarden benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "host:       $(uname -srm), $(nproc) CPU ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo))"
echo "smtp-source/smtp-sink: Postfix $(dpkg-query -W -f='${Version}' postfix 2>/dev/null || echo '?')"
echo "haproxy:    $($HAPROXY -v 2>/dev/null | head -1 | sed 's/ - https.*//'), nbthread ${BENCH_HAPROXY_THREADS:-default}"
if [ $USE_MW = 1 ]; then
	echo "mailwarden: $MW_BIN ($(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo 'no git revision'))"
	echo "plugin:     $MW_PLUGIN"
else
	echo "mailwarden: skipped (BENCH_NO_MAILWARDEN=1)"
fi
echo "messages:   ${SIZE}-byte payload, up to $MESSAGES per case, about ${SECONDS_BUDGET}s per case, $ROUNDS round(s)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# --- throughput -------------------------------------------------------------
cell() { # "N T RATE" -> "RATE (N)"
	if [ "$1" = FAIL ] || [ "$1" = - ]; then printf '%s' "$1"; return; fi
	local n t r; read -r n t r <<<"$1"; printf '%s (%s)' "$r" "$n"
}
rate() { if [ "$1" = FAIL ] || [ "$1" = - ]; then echo 0; else set -- $1; echo "$3"; fi; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "-" }'; }
# best OLD NEW - the better of two results (FAIL sticks).
best() {
	if [ "$1" = FAIL ] || [ "$2" = FAIL ]; then echo FAIL; return; fi
	if [ "$1" = - ] || [ "$(rate "$2")" -gt "$(rate "$1")" ]; then echo "$2"; else echo "$1"; fi
}

FAILED=0
declare -A RES RELAY_RATIO
TARGETS="direct:$SINK_PORT relay:$RELAY_PORT"
[ $USE_MW = 1 ] && TARGETS="$TARGETS mailwarden:$MW_PORT"
[ "$USE_XC" = 1 ] && TARGETS="$TARGETS mw+xclient:$XC_PORT"
for round in $(seq "$ROUNDS"); do
	for per in $PERSESS; do
		for conc in $CONCS; do
			# The three targets back to back, so that they share whatever
			# else the machine is doing at that moment.
			for tp in $TARGETS; do
				name=${tp%%:*}; port=${tp#*:}
				x=$(measure "$port" "$per" "$conc")
				RES[$name.$per.$conc]=$(best "${RES[$name.$per.$conc]:--}" "$x")
				printf '  round %s: %3s msg/session, concurrency %3s, %-10s %s\n' \
					"$round" "$per" "$conc" "$name" \
					"$(if [ "$x" = FAIL ]; then echo FAIL; else set -- $x; echo "$1 msgs in $2 s = $3/s"; fi)" >&2
			done
			for x in ${MW_TPUT_PID:+tput:$MW_TPUT_PID} ${MW_XC_PID:+tput-xc:$MW_XC_PID}; do
				kill -0 "${x#*:}" 2>/dev/null && continue
				echo "bench: mailwarden (${x%%:*}) died" >&2
				tail -20 "$TMP/${x%%:*}/mailwarden.log" >&2
				exit 1
			done
		done
	done
done
echo
[ "$ROUNDS" -gt 1 ] && echo "best of $ROUNDS rounds:"
printf '%-9s %5s  %16s  %16s  %16s  %9s  %8s  %18s  %8s\n' "msg/sess" "conc" \
	"direct msg/s (n)" "relay msg/s (n)" "mw msg/s (n)" "mw/direct" "mw/relay" \
	"mw+xclient msg/s" "/relay"
for per in $PERSESS; do
	for conc in $CONCS; do
		d=${RES[direct.$per.$conc]}; r=${RES[relay.$per.$conc]}; m=${RES[mailwarden.$per.$conc]:--}
		xc=${RES[mw+xclient.$per.$conc]:--}
		for x in "$d" "$r" "$m" "$xc"; do [ "$x" = FAIL ] && FAILED=1; done
		rd=$(ratio "$(rate "$m")" "$(rate "$d")")
		rr=$(ratio "$(rate "$m")" "$(rate "$r")")
		RELAY_RATIO[$per.$conc]=$rr
		printf '%-9s %5s  %16s  %16s  %16s  %9s  %8s  %18s  %8s\n' "$per" "$conc" \
			"$(cell "$d")" "$(cell "$r")" "$(cell "$m")" "$rd" "$rr" \
			"$(cell "$xc")" "$(ratio "$(rate "$xc")" "$(rate "$r")")"
	done
done
echo "load average after the throughput runs: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# Sanity: the proxy really scanned every message it relayed.
sleep 0.5
for x in ${MW_TPUT_PID:+tput:$MW_PORT} ${MW_XC_PID:+tput-xc:$XC_PORT}; do
	tag=${x%%:*}; port=${x#*:}
	sent=$(awk '{ s += $1 } END { print s + 0 }' "$TMP/sent.$port" 2>/dev/null || echo 0)
	lines=$(wc -l <"$TMP/$tag/audit.log" 2>/dev/null || echo 0)
	echo "mailwarden ($tag): $sent messages sent (pilots included), $lines audit records"
	[ "$sent" = "$lines" ] || { echo "bench: audit records and messages sent differ"; FAILED=1; }
	if [ -s "$TMP/$tag/mailwarden.log" ]; then
		echo "mailwarden ($tag) stderr (last 5 lines):"
		tail -5 "$TMP/$tag/mailwarden.log" | sed 's/^/  /'
	fi
	echo
done

# --- memory per idle session ---------------------------------------------
# proxy_pid MASTER - the child of the master that runs the proxy.
proxy_pid() {
	local p
	for p in $(ps -o pid= --ppid "$1"); do
		if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q proxy ||
			grep -q proxy "/proc/$p/comm" 2>/dev/null; then
			echo "$p"; return 0
		fi
	done
	return 1
}
# mem PID - "RSS_KiB PSS_KiB" from smaps_rollup.
mem() {
	awk '/^Rss:/ { r = $2 } /^Pss:/ { p = $2 } END { print r + 0, p + 0 }' "/proc/$1/smaps_rollup"
}

MEM_KIB=""
if [ $USE_MW = 1 ] && [ "$IDLE" -gt 0 ]; then
	echo "== memory: $IDLE idle client sessions (greeting read, nothing sent)"
	start_mailwarden "$IDLE_PORT" idle -o client_command_timeout=300s
	MW_IDLE_PID=$MW_PID
	sleep 1
	PP=$(proxy_pid "$MW_IDLE_PID")
	if [ -z "$PP" ]; then
		echo "no child of $MW_IDLE_PID named *proxy*; children:"
		ps -o pid=,args= --ppid "$MW_IDLE_PID" | sed 's/^/  /'
		FAILED=1
	else
		read -r rss0 pss0 <<<"$(mem "$PP")"
		"$PY" "$HERE/idle_sessions.py" 127.0.0.1 "$IDLE_PORT" "$IDLE" \
			>"$TMP/idle.out" 2>"$TMP/idle.err" &
		IDLE_CLIENT=$!; PIDS="$PIDS $IDLE_CLIENT"
		for _ in $(seq 1200); do
			grep -q -e ready -e failed "$TMP/idle.out" 2>/dev/null && break
			kill -0 "$IDLE_CLIENT" 2>/dev/null || break
			sleep 0.1
		done
		if grep -q ready "$TMP/idle.out"; then
			sleep 1
			read -r rss1 pss1 <<<"$(mem "$PP")"
			printf 'proxy pid %s (%s)\n' "$PP" "$(tr '\0' ' ' <"/proc/$PP/cmdline" | sed 's/ *$//')"
			printf '  before: RSS %7d KiB  PSS %7d KiB\n' "$rss0" "$pss0"
			printf '  after:  RSS %7d KiB  PSS %7d KiB\n' "$rss1" "$pss1"
			MEM_KIB=$(awk -v a="$rss0" -v b="$rss1" -v n="$IDLE" 'BEGIN { printf "%.2f", (b - a) / n }')
			MEM_PSS=$(awk -v a="$pss0" -v b="$pss1" -v n="$IDLE" 'BEGIN { printf "%.2f", (b - a) / n }')
			echo "  per idle session: RSS $MEM_KIB KiB, PSS $MEM_PSS KiB (kernel socket buffers not included)"
		else
			echo "idle sessions failed:"; cat "$TMP/idle.out" "$TMP/idle.err" | sed 's/^/  /'
			FAILED=1
		fi
		kill "$IDLE_CLIENT" 2>/dev/null; wait "$IDLE_CLIENT" 2>/dev/null
	fi
	echo
fi

# --- targets ----------------------------------------------------------------
if [ $USE_MW = 1 ]; then
	for per in $PERSESS; do
		a=${RELAY_RATIO[$per.10]:--}; b=${RELAY_RATIO[$per.100]:--}
		v=$(awk -v a="$a" -v b="$b" 'BEGIN { print (a != "-" && b != "-" && a + 0 >= 0.8 && b + 0 >= 0.8) ? "MET" : "NOT MET" }')
		echo "target: mailwarden >= 0.8x relay at concurrency 10 and 100, $per msg/session: $v ($a, $b)"
	done
	if [ -n "$MEM_KIB" ]; then
		v=$(awk -v k="$MEM_KIB" 'BEGIN { print (k <= 16) ? "MET" : "NOT MET" }')
		echo "target: <= 16 KiB per idle session (proxy RSS): $v ($MEM_KIB KiB)"
	fi
fi
[ $FAILED = 0 ] || { echo "bench: some runs failed (see above)"; exit 1; }
exit 0
