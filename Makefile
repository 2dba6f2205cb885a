# mailwarden - plain Makefile.  make | make check | make demo | make install
# SANITIZE=1 builds everything with AddressSanitizer + UBSan.

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
CC      ?= cc

PKGS    := libevent libevent_pthreads json-c inih openssl libunbound opendkim libpsl libidn2 \
           libclamav gmime-3.0 libmagic libarchive libhs libpcre2-8 lmdb hiredis zlib
# libspf2, libopendmarc and libbz2 ship no .pc file.  libmilter is Debian's
# static libmilter.a (libmilter-dev), with its accept() and close() calls
# wrapped: it has no hook at accept(), and spins when accept() fails for
# want of descriptors (proxy/milter_accept.c)
MILTER_LIBS := -Wl,-Bstatic -lmilter -Wl,-Bdynamic -Wl,--wrap=accept -Wl,--wrap=close
EXTRA_LIBS := -lspf2 -lopendmarc -lbz2 $(MILTER_LIBS)
WARN    := -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wpointer-arith \
           -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter \
           -Werror=implicit-function-declaration
CSTD    := -std=c11 -D_GNU_SOURCE
OPT     ?= -O2 -g
ifeq ($(SANITIZE),1)
OPT     := -O1 -g -fno-omit-frame-pointer
SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
BUILD   := build-san
# instrumented code is 3-10x slower: compiling the stock SpamAssassin rules
# cold takes minutes; the per-test safety net grows with it
TEST_DEADLINE := 900
endif
TEST_DEADLINE ?= 150
# pytest-xdist workers for the functional tests (each file runs whole in
# one worker, so a module's fixtures are set up once); most tests wait on
# peers and timeouts rather than compute, so two halve make check's time
# on two cores.  TEST_JOBS=1 runs them in one process, in file order.
TEST_JOBS ?= 2
ifeq ($(TEST_JOBS),1)
XDIST :=
else
XDIST := -n $(TEST_JOBS) --dist loadfile
endif
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  += $(CSTD) $(WARN) $(OPT) $(SAN) -Iinclude -I. $(PKG_CFLAGS) -fPIC
LDFLAGS += $(SAN) -rdynamic
LDLIBS  += $(PKG_LIBS) $(EXTRA_LIBS) -lpthread -ldl -lm

CORE_SRC := $(filter-out proxy/main.c,$(wildcard proxy/*.c)) $(wildcard filters/*.c) $(wildcard rules/*.c)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
MAIN_OBJ := $(BUILD)/proxy/main.o
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
PLUGIN   := $(BUILD)/tests/example_plugin.so

.PHONY: FORCE all deps check unit functional demo install clean bench fuzz fuzz-build

all: $(BUILD)/mailwarden $(PLUGIN)
ifneq ($(SANITIZE),1)
all: mailwarden          # ./mailwarden is always the plain build
endif

mailwarden: $(BUILD)/mailwarden
	rm -f $@ && cp $< $@

$(BUILD)/mailwarden: $(MAIN_OBJ) $(BUILD)/libmw.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libmw.a: $(CORE_OBJ)
	rm -f $@; ar rcs $@ $^

$(BUILD)/%.o: %.c $(wildcard include/mailwarden/*.h proxy/*.h filters/*.h rules/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# where make install puts the shipped rules, and so where the rules filter
# reads them when rules_files names none (it read /usr/share/mailwarden/rules
# whatever the PREFIX, and `make install` put them in /usr/local/share/...).
# The stamp holds the path and changes only with it, so a new PREFIX
# recompiles rules.o and nothing else.
DATADIR ?= $(PREFIX)/share/mailwarden
$(BUILD)/datadir.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(DATADIR)' | cmp -s - $@ || echo '$(DATADIR)' > $@
$(BUILD)/filters/rules.o: $(BUILD)/datadir.stamp
$(BUILD)/filters/rules.o: CFLAGS += -DMW_RULES_DIR='"$(DATADIR)/rules"'
FORCE:

$(PLUGIN): tests/plugins/example_plugin.c include/mailwarden/filter.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPT) $(SAN) -Iinclude -shared -fPIC -o $@ $<

# rules (issue 6): batch scanner for the SpamAssassin agreement test and bench
RULES_BATCH := $(BUILD)/tests/rules_batch
all: $(RULES_BATCH)
$(RULES_BATCH): tests/bench/rules_batch.c $(BUILD)/libmw.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmw.a $(LDLIBS)

# what every unit test may link besides the core (tests/unit/unit_*.c:
# the scratch directory helper, the scanner tests' requests and fake scanner)
UNIT_LIB_SRC := $(wildcard tests/unit/unit_*.c)
UNIT_LIB := $(UNIT_LIB_SRC:tests/unit/%.c=$(BUILD)/tests/%.o)

$(UNIT_LIB): $(BUILD)/tests/%.o: tests/unit/%.c tests/unit/%.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/test_%: tests/unit/test_%.c $(UNIT_LIB) $(BUILD)/libmw.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(UNIT_LIB) $(BUILD)/libmw.a $(LDLIBS) -lcmocka

# test_textfiles counts the decoders of files encoded in text parts: each
# call from another object of libmw goes through its __wrap_ function
$(BUILD)/tests/test_textfiles: LDFLAGS += -Wl,--wrap=uu_decode -Wl,--wrap=yenc_data -Wl,--wrap=hqx_read

deps:          # everything make check needs (scripts/install-deps --list)
	@sh scripts/install-deps

unit: $(UNIT_BIN) $(PLUGIN)
	@rc=0; for t in $(UNIT_BIN); do echo "== $$t"; MW_PLUGIN=$(abspath $(PLUGIN)) $$t || rc=1; done; exit $$rc

functional: all
	cd tests/functional && MW_BUILD=$(abspath $(BUILD)) MW_BIN=$(abspath $(BUILD)/mailwarden) \
	  MW_PLUGIN=$(abspath $(PLUGIN)) MW_TEST_DEADLINE=$(TEST_DEADLINE) /usr/bin/python3 -B -m pytest -q -p no:cacheprovider $(XDIST) $(PYTEST_ARGS) .

check: deps
	$(MAKE) all
	@rc=0; $(MAKE) unit || rc=1; $(MAKE) functional || rc=1; \
	  if [ $$rc = 0 ]; then echo "make check: all passed"; else echo "make check: FAILED"; fi; exit $$rc

# the demo group only: the build and the demo's tools, none of the test
# peers (Postfix, clamd, Redis, unbound... services of their own)
demo:
	@sh scripts/install-deps demo
	$(MAKE) all
	MW_BIN=$(abspath $(BUILD)/mailwarden) MW_PLUGIN=$(abspath $(PLUGIN)) sh scripts/demo

bench: deps
	$(MAKE) all
	MW_BIN=$(abspath $(BUILD)/mailwarden) MW_PLUGIN=$(abspath $(PLUGIN)) sh tests/bench/run.sh
	MW_BIN=$(abspath $(BUILD)/mailwarden) MW_PLUGIN=$(abspath $(PLUGIN)) /usr/bin/python3 tests/bench/milter_bench.py
	MW_BUILD=$(abspath $(BUILD)) /usr/bin/python3 tests/bench/rules_vs_spamd.py

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)/etc/mailwarden \
	  $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/man/man5 \
	  $(DESTDIR)$(PREFIX)/lib/mailwarden/plugins
	install -m 0755 $(BUILD)/mailwarden $(DESTDIR)$(PREFIX)/sbin/mailwarden
	install -m 0644 etc/mailwarden.conf $(DESTDIR)/etc/mailwarden/mailwarden.conf.sample
	# the file the unit reads: the sample, unless the admin's is there already
	[ -e $(DESTDIR)/etc/mailwarden/mailwarden.conf ] || \
	  install -m 0640 etc/mailwarden.conf $(DESTDIR)/etc/mailwarden/mailwarden.conf
	[ ! -f doc/mailwarden.8 ] || install -m 0644 doc/mailwarden.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	[ ! -f doc/mailwarden.conf.5 ] || install -m 0644 doc/mailwarden.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	# the unit names the binary where this PREFIX put it
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|/usr/local/sbin/mailwarden|$(PREFIX)/sbin/mailwarden|g' etc/mailwarden.service \
	  > $(DESTDIR)$(PREFIX)/lib/systemd/system/mailwarden.service
	chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/mailwarden.service
	install -D -m 0644 etc/mailwarden.logrotate $(DESTDIR)/etc/logrotate.d/mailwarden
	install -m 0755 $(PLUGIN) $(DESTDIR)$(PREFIX)/lib/mailwarden/plugins/example.so
	install -d $(DESTDIR)$(DATADIR)/rules
	install -m 0644 rules/cf/*.cf $(DESTDIR)$(DATADIR)/rules/
	# the user and the directories the unit needs, made by systemd at boot,
	# and now when installing to this machine (no DESTDIR) as root
	install -D -m 0644 etc/mailwarden.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/mailwarden.conf
	install -D -m 0644 etc/mailwarden.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/mailwarden.conf
	if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v systemd-sysusers >/dev/null; then \
	  systemd-sysusers $(PREFIX)/lib/sysusers.d/mailwarden.conf && \
	  systemd-tmpfiles --create $(PREFIX)/lib/tmpfiles.d/mailwarden.conf; fi

# libFuzzer targets (clang; README "Fuzzing").  The core is compiled a second
# time with coverage instrumentation and ASan/UBSan into build/fuzz/obj; each
# harness links only what it uses from that archive.  make fuzz builds them
# all, then runs one at a time for FUZZ_SECONDS each (corpora kept in
# build/fuzz/corpus-NAME, seeds from tests/data where useful); FUZZ_TARGETS
# picks some ("make fuzz FUZZ_TARGETS='mime spf' FUZZ_SECONDS=600").
FUZZ_SECONDS ?= 60
FUZZ_ALL     := dataframe smtp_parse transport rules html mime scanwire headers spf relay bayes scan rewrite pgp
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_DIR     := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  := $(CSTD) -g -O1 -fno-omit-frame-pointer $(FUZZ_SAN) -Iinclude -I. $(PKG_CFLAGS)
FUZZ_OBJ     := $(CORE_SRC:%.c=$(FUZZ_DIR)/obj/%.o)
FUZZ_BIN     := $(FUZZ_ALL:%=$(FUZZ_DIR)/fuzz_%)
# the longest input each harness is run with
FUZZ_MAXLEN_transport := 1024
FUZZ_MAXLEN_rules     := 2048
FUZZ_MAXLEN_mime      := 16384
FUZZ_MAXLEN_rewrite   := 16384
FUZZ_MAXLEN_bayes     := 16384
FUZZ_MAXLEN_scan      := 16384
FUZZ_MAXLEN_relay     := 2048
FUZZ_MAXLEN_spf       := 1024
FUZZ_MAXLEN_pgp       := 8192
# seed inputs (read only, after the corpus directory; tests/fuzz/seeds/README.md)
FUZZ_MSG_SEEDS     := tests/data/demo tests/fuzz/seeds/msg
FUZZ_SEEDS_mime    := $(FUZZ_MSG_SEEDS)
FUZZ_SEEDS_rewrite := $(FUZZ_MSG_SEEDS)
FUZZ_SEEDS_bayes   := $(FUZZ_MSG_SEEDS)
FUZZ_SEEDS_headers := $(FUZZ_MSG_SEEDS)
FUZZ_SEEDS_scan    := $(FUZZ_MSG_SEEDS)
FUZZ_SEEDS_spf     := tests/fuzz/seeds/spf
FUZZ_SEEDS_relay   := tests/fuzz/seeds/relay
FUZZ_SEEDS_smtp_parse := tests/fuzz/seeds/smtp
FUZZ_SEEDS_pgp     := tests/data/pgp

$(FUZZ_DIR)/obj/%.o: %.c $(wildcard include/mailwarden/*.h proxy/*.h filters/*.h rules/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_DIR)/libmw-fuzz.a: $(FUZZ_OBJ)
	rm -f $@; ar rcs $@ $^

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_DIR)/libmw-fuzz.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_DIR)/libmw-fuzz.a \
	  $(PKG_LIBS) $(EXTRA_LIBS) -lpthread -ldl -lm -lstdc++

fuzz-build:
	@sh scripts/install-deps fuzz
	$(MAKE) $(FUZZ_BIN)

# one harness: the corpus directory first (written), then its seeds
define FUZZ_RUN
	@mkdir -p $(FUZZ_DIR)/corpus-$(1)
	$(FUZZ_DIR)/fuzz_$(1) -max_total_time=$(FUZZ_SECONDS) -max_len=$(or $(FUZZ_MAXLEN_$(1)),4096) \
	  -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/$(1)- \
	  $(FUZZ_DIR)/corpus-$(1) $(FUZZ_SEEDS_$(1))

endef

fuzz: fuzz-build
	$(foreach t,$(FUZZ_TARGETS),$(call FUZZ_RUN,$(t)))

clean:
	rm -rf build build-san mailwarden tests/functional/__pycache__
