#!/bin/bash
# cpu_per_msg.sh - CPU time per message of mailwarden's proxy and scanner
# processes, for one or more binaries measured alternately in the same
# window (A/B comparison on a machine that is busy with other work: CPU per
# message moves much less with the load than messages/s do).
#
#   tests/bench/cpu_per_msg.sh [BIN ...]     (default: <repo>/build/mailwarden)
#
# For each round and each binary: a fresh mailwarden (example plugin, audit
# log on, as in run.sh) in front of smtp-sink; a warm-up run; then
# smtp-source sends CPU_MESSAGES messages (CPU_PER_SESSION per session,
# CPU_CONCURRENCY sessions at once) and the user+system time of the proxy
# and the scanner process (all threads, from /proc/PID/stat) over that run
# is divided by the messages sent.  Prints one line per run and the mean
# per binary.  A benchmark, not a test.
#
# Environment: MW_PLUGIN, CPU_MESSAGES (default 20000), CPU_PER_SESSION
# (100), CPU_CONCURRENCY (10), CPU_ROUNDS (3), BENCH_SIZE (10240),
# CPU_MW_OPTS (extra mailwarden arguments).  Only loopback addresses.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MW_PLUGIN=${MW_PLUGIN:-$ROOT/build/tests/example_plugin.so}
N=${CPU_MESSAGES:-20000}
PER=${CPU_PER_SESSION:-100}
CONC=${CPU_CONCURRENCY:-10}
ROUNDS=${CPU_ROUNDS:-3}
SIZE=${BENCH_SIZE:-10240}
PY=/usr/bin/python3
SMTP_SOURCE=/usr/sbin/smtp-source
SMTP_SINK=/usr/sbin/smtp-sink
[ $# -gt 0 ] || set -- "$ROOT/build/mailwarden"

die() { echo "cpu_per_msg: $*" >&2; exit 1; }
for t in "$SMTP_SOURCE" "$SMTP_SINK" "$MW_PLUGIN" "$@"; do
	[ -e "$t" ] || die "$t missing"
done

TMP=$(mktemp -d /tmp/mw-cpu.XXXXXX) || die mktemp
PIDS=""
stop() { # stop PID: SIGTERM, SIGKILL after 3 s
	local i
	kill "$1" 2>/dev/null || return 0
	for i in $(seq 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}
cleanup() { for p in $PIDS; do stop "$p"; done; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
ulimit -n "$(ulimit -Hn)" 2>/dev/null

. "$HERE/benchlib.sh"
# ticks PID - utime+stime of the whole process, in clock ticks
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
child() { # child MASTER NAME - pid of the child whose comm is mw-NAME
	local p
	for p in $(ps -o pid= --ppid "$1"); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = "mw-$2" ] && { echo "$p"; return 0; }
	done
	return 1
}

read -r SINK_PORT MW_PORT <<<"$(free_ports 2)"
SINK_USER=""
[ "$(id -u)" = 0 ] && SINK_USER="-u nobody"
$SMTP_SINK $SINK_USER -m 2000 -t 300 127.0.0.1:"$SINK_PORT" 4096 >"$TMP/sink.log" 2>&1 &
SINK_PID=$!; PIDS="$SINK_PID"
wait_listen "$SINK_PORT" "$SINK_PID" || die "smtp-sink did not start"

SRC_ARGS=(-l "$SIZE" -M bench.example -f sender@bench.example -t rcpt@bench.example
	-S "mailwarden benchmark message")
send() { # send COUNT
	local n=$1 w wp="" sessions share extra k
	if [ "$PER" = 1 ]; then
		$SMTP_SOURCE -s "$CONC" -m "$n" "${SRC_ARGS[@]}" 127.0.0.1:"$MW_PORT" || return 1
		return 0
	fi
	sessions=$(( (n + PER - 1) / PER ))
	share=$((sessions / CONC)); extra=$((sessions % CONC))
	for w in $(seq "$CONC"); do
		k=$share; [ "$w" -le "$extra" ] && k=$((k + 1))
		( for _ in $(seq "$k"); do
			$SMTP_SOURCE -d -s 1 -m "$PER" "${SRC_ARGS[@]}" 127.0.0.1:"$MW_PORT" || exit 1
		done ) &
		wp="$wp $!"
	done
	for w in $wp; do wait "$w" || return 1; done
}

HZ=$(getconf CLK_TCK)
declare -A SUMP SUMS
echo "cpu_per_msg: $N messages of $SIZE bytes, $PER per session, concurrency $CONC, $ROUNDS round(s); load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
	for bin in "$@"; do
		rm -rf "$TMP/mw"; mkdir -p "$TMP/mw/q"
		"$bin" -f --listen 127.0.0.1:"$MW_PORT" --upstream 127.0.0.1:"$SINK_PORT" \
			-o plugin="$MW_PLUGIN" -o audit_log="$TMP/mw/audit.log" -o stats_file="$TMP/mw/stats" \
			-o quarantine_dir="$TMP/mw/q" -o max_connections=20000 \
			-o max_connections_per_ip=20000 -o log_level=warning ${CPU_MW_OPTS:-} \
			>"$TMP/mw/log" 2>&1 &
		MW=$!; PIDS="$PIDS $MW"
		wait_listen "$MW_PORT" "$MW" || { cat "$TMP/mw/log"; die "mailwarden did not start"; }
		PP=$(child "$MW" proxy) && SP=$(child "$MW" scanner) || die "no proxy/scanner child"
		send $((PER * CONC > 1000 ? PER * CONC : 1000)) >/dev/null 2>&1 || die "warm-up failed"
		p0=$(ticks "$PP"); s0=$(ticks "$SP"); t0=$(date +%s.%N)
		send "$N" >/dev/null 2>"$TMP/src.err" || { head -3 "$TMP/src.err"; die "smtp-source failed"; }
		p1=$(ticks "$PP"); s1=$(ticks "$SP"); t1=$(date +%s.%N)
		stop "$MW"; PIDS="$SINK_PID"
		lines=$(wc -l <"$TMP/mw/audit.log")
		read -r pus sus rate <<<"$(awk -v a="$p0" -v b="$p1" -v c="$s0" -v d="$s1" -v n="$N" \
			-v hz="$HZ" -v t0="$t0" -v t1="$t1" \
			'BEGIN { printf "%.0f %.0f %.0f", (b - a) / hz / n * 1e6, (d - c) / hz / n * 1e6, n / (t1 - t0) }')"
		SUMP[$bin]=$(( ${SUMP[$bin]:-0} + pus )); SUMS[$bin]=$(( ${SUMS[$bin]:-0} + sus ))
		printf 'round %s  %-40s proxy %4s us  scanner %4s us  (%s msg/s, %s audit lines, load %s)\n' \
			"$round" "$bin" "$pus" "$sus" "$rate" "$lines" "$(cut -d' ' -f1 /proc/loadavg)"
	done
done
echo "mean per message over $ROUNDS round(s):"
for bin in "$@"; do
	printf '  %-40s proxy %4s us  scanner %4s us  total %4s us\n' "$bin" \
		$(( SUMP[$bin] / ROUNDS )) $(( SUMS[$bin] / ROUNDS )) $(( (SUMP[$bin] + SUMS[$bin]) / ROUNDS ))
done
