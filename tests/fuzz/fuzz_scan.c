/* fuzz_scan.c - libFuzzer target for a whole scan of a message as the
 * scanner runs it (filters/pipeline.c, dry run): the header parse, the
 * shared MIME parse, the attachments filter (types, names, archives
 * listed with libarchive) and the rules filter's bridge (header decoding,
 * body rendering, URIs and addresses in text) running mailwarden's own
 * rules (rules/cf: header, body, bulk and eval rules).  No filter that
 * needs the network or a store.  The input is the spool: a message as
 * CRLF lines, any bytes.
 *
 * Build and run: make fuzz FUZZ_TARGETS=scan FUZZ_SECONDS=60 (the rules
 * are the tree's rules/cf, found from the binary's place in build/fuzz, or
 * MW_FUZZ_RULES).
 *
 * Checks beyond the sanitizers: the scan ends without an error, with an
 * action and a finite score, and every symbol is named as the wire format
 * requires.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "filters/pipeline.h"
#include "proxy/config.h"
#include "proxy/scanproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "check failed: %s\n", #x); abort(); } } while (0)

static struct pipeline *pipe_line;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("MW_FUZZ_RULES");
	char rules[1100], err[1024];
	const char *ov[] = { "filters = attachments rules", rules, "rules_cache_dir =",
		"rules_net_tests = no", "rules_time_budget = 5s" };
	struct config *cfg;

	(void)argc;
	(void)argv;
	char exe[900];
	ssize_t n;

	/* the tree's rules/cf: the binary is build/fuzz/fuzz_scan */
	if (dir == NULL && (n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) > 0) {
		exe[n] = '\0';
		for (int up = 0; up < 3 && strrchr(exe, '/') != NULL; up++)
			*strrchr(exe, '/') = '\0';
		strcat(exe, "/rules/cf");
		dir = exe;
	}
	snprintf(rules, sizeof(rules), "rules_files = %s", dir ? dir : "rules/cf");
	cfg = config_load(NULL, ov, sizeof(ov) / sizeof(ov[0]), err, sizeof(err));
	if (cfg == NULL || (pipe_line = pipeline_new(cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_scan: %s\n", err);
		exit(1);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct scan_request req = { 0 };
	struct scan_result res = { 0 };
	int fd = memfd_create("fuzz-scan", MFD_CLOEXEC);

	CHECK(fd >= 0);
	CHECK(size == 0 || write(fd, data, size) == (ssize_t)size);
	strcpy(req.session_id, "00000000000000f0");
	req.listener = strdup("fuzz");
	req.client_ip = strdup("192.0.2.1");
	req.client_name = strdup("");
	req.helo = strdup("fuzz.example.org");
	req.mail_from = strdup("a@example.org");
	req.mail_params = strdup("");
	req.nrcpts = 1;
	req.rcpts = calloc(1, sizeof(char *));
	req.rcpts[0] = strdup("b@example.net");
	req.auth_user = strdup("");
	req.tls = strdup("");
	req.size = size;
	pipeline_scan_ex(pipe_line, &req, fd, PIPELINE_DRY_RUN, &res);
	close(fd);
	if (res.error[0] != '\0') {
		fprintf(stderr, "scan error: %s\n", res.error);
		abort();
	}
	CHECK((unsigned)res.action < MW_ACTION_COUNT && isfinite(res.score));
	for (size_t i = 0; i < res.nsymbols; i++) {
		const char *n = res.symbols[i].name;

		CHECK(n[0] != '\0' && n[strspn(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")] == '\0');
		CHECK(isfinite(res.symbols[i].score));
	}
	scan_result_free(&res);
	scan_request_free(&req);
	return 0;
}
