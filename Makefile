# mailwarden - plain Makefile.  make | make check | make demo | make install
# SANITIZE=1 builds everything with AddressSanitizer + UBSan.

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
CC      ?= cc

PKGS    := libevent libevent_pthreads json-c inih openssl libunbound opendkim libpsl \
           libclamav gmime-3.0 libmagic libarchive libhs libpcre2-8 lmdb hiredis milter
# libspf2 and libopendmarc ship no .pc file
EXTRA_LIBS := -lspf2 -lopendmarc
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

.PHONY: all deps check unit functional demo install clean bench fuzz

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

$(PLUGIN): tests/plugins/example_plugin.c include/mailwarden/filter.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPT) $(SAN) -Iinclude -shared -fPIC -o $@ $<

# rules (issue 6): batch scanner for the SpamAssassin agreement test and bench
RULES_BATCH := $(BUILD)/tests/rules_batch
all: $(RULES_BATCH)
$(RULES_BATCH): tests/bench/rules_batch.c $(BUILD)/libmw.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmw.a $(LDLIBS)

$(BUILD)/tests/test_%: tests/unit/test_%.c $(BUILD)/libmw.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmw.a $(LDLIBS) -lcmocka

deps:
	@sh scripts/install-deps

unit: $(UNIT_BIN) $(PLUGIN)
	@rc=0; for t in $(UNIT_BIN); do echo "== $$t"; MW_PLUGIN=$(abspath $(PLUGIN)) $$t || rc=1; done; exit $$rc

functional: all
	cd tests/functional && MW_BUILD=$(abspath $(BUILD)) MW_BIN=$(abspath $(BUILD)/mailwarden) \
	  MW_PLUGIN=$(abspath $(PLUGIN)) MW_TEST_DEADLINE=$(TEST_DEADLINE) /usr/bin/python3 -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) .

check: deps
	$(MAKE) all
	@rc=0; $(MAKE) unit || rc=1; $(MAKE) functional || rc=1; \
	  if [ $$rc = 0 ]; then echo "make check: all passed"; else echo "make check: FAILED"; fi; exit $$rc

demo: deps
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
	[ ! -f doc/mailwarden.8 ] || install -m 0644 doc/mailwarden.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	[ ! -f doc/mailwarden.conf.5 ] || install -m 0644 doc/mailwarden.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	[ ! -f etc/mailwarden.service ] || install -D -m 0644 etc/mailwarden.service $(DESTDIR)$(PREFIX)/lib/systemd/system/mailwarden.service
	install -m 0755 $(PLUGIN) $(DESTDIR)$(PREFIX)/lib/mailwarden/plugins/example.so
	install -d $(DESTDIR)$(PREFIX)/share/mailwarden/rules
	install -m 0644 rules/cf/*.cf $(DESTDIR)$(PREFIX)/share/mailwarden/rules/

# libFuzzer targets (clang); FUZZ_SECONDS per target
FUZZ_SECONDS ?= 60
fuzz:
	@sh scripts/install-deps fuzz
	@mkdir -p build/fuzz
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -Iinclude -I. tests/fuzz/fuzz_dataframe.c proxy/dataframe.c -o build/fuzz/fuzz_dataframe
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -Iinclude -I. tests/fuzz/fuzz_smtp_parse.c proxy/smtp_parse.c -o build/fuzz/fuzz_smtp_parse
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -Iinclude -I. tests/fuzz/fuzz_transport.c proxy/proxyproto.c proxy/bdat.c -o build/fuzz/fuzz_transport
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -Iinclude -I. $$(pkg-config --cflags libhs libpcre2-8) tests/fuzz/fuzz_rules.c rules/*.c \
	  $$(pkg-config --libs libhs libpcre2-8) -lstdc++ -lm -o build/fuzz/fuzz_rules
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -Iinclude -I. tests/fuzz/fuzz_html.c rules/html_stats.c -lm -o build/fuzz/fuzz_html
	@mkdir -p build/fuzz/corpus-dataframe build/fuzz/corpus-smtp build/fuzz/corpus-transport build/fuzz/corpus-rules
	build/fuzz/fuzz_dataframe -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build/fuzz/corpus-dataframe
	build/fuzz/fuzz_smtp_parse -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build/fuzz/corpus-smtp
	build/fuzz/fuzz_transport -max_total_time=$(FUZZ_SECONDS) -max_len=1024 build/fuzz/corpus-transport
	build/fuzz/fuzz_rules -max_total_time=$(FUZZ_SECONDS) -max_len=2048 build/fuzz/corpus-rules
	@mkdir -p build/fuzz/corpus-html
	build/fuzz/fuzz_html -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build/fuzz/corpus-html

clean:
	rm -rf build build-san mailwarden tests/functional/__pycache__
