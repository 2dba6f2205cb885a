# benchlib.sh - shell helpers the benchmark scripts share (sourced by
# run.sh, cpu_per_msg.sh and tls.sh; needs $PY, a python3).

# free_ports N - N distinct free TCP ports on 127.0.0.1.
free_ports() {
	"$PY" - "$1" <<'PYEOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PYEOF
}

# wait_listen PORT [PID] - until something listens on 127.0.0.1:PORT;
# fails after 10 s, or as soon as PID (if given) has exited.
wait_listen() {
	local i
	for i in $(seq 100); do
		if ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; then return 0; fi
		if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
		sleep 0.1
	done
	return 1
}
