# smelt — one non-recursive Makefile.  `make help` lists the targets.  V=1 shows commands.
#
# Library: every .c under formats/ convert/ quant/ verify/ except the smelt-*.c mains.
# Tools:   each smelt-*.c main links against lib/libsmelt.a into bin/.
# Tests:   each tests/<area>/test_*.c is one Criterion binary; tests/run-tests drives them.
# Flavors: release (default, -O2) in build/release; asan (make check) in build/asan.

CC      ?= cc
PREFIX  ?= /usr/local
FLAVOR  ?= release
BUILD   := build/$(FLAVOR)

ifeq ($(FLAVOR),asan)
  OPT    := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
  BINDIR := $(BUILD)/bin
  LIBDIR := $(BUILD)/lib
else ifeq ($(FLAVOR),fuzz)
  CC     := clang
  OPT    := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
  BINDIR := $(BUILD)/bin
  LIBDIR := $(BUILD)/lib
else
  # gcc's -O2 vectorizes only "very cheap" loops; the dynamic cost model vectorizes the
  # row converters and kernels that are written to be vectorized
  OPT    := -O2 -g $(if $(findstring clang,$(shell $(CC) --version 2>/dev/null)),,-fvect-cost-model=dynamic)
  BINDIR := bin
  LIBDIR := lib
endif

WARN     := -Wall -Wextra -Werror -Wno-missing-field-initializers
CPPFLAGS += -I. -D_GNU_SOURCE
CFLAGS   += -std=c11 $(WARN) $(OPT) -pthread -MMD -MP
LDFLAGS  += $(filter -fsanitize%,$(OPT)) -pthread
LDLIBS   := -ljansson -lxxhash -lz -lm -ldl

ifeq ($(V),1)
  Q :=
  say :=
else
  Q := @
  say = @printf '  %-7s %s\n' $(1) $(2);
endif

ALL_C     := $(sort $(shell find formats convert quant verify -name '*.c'))
TOOL_SRC  := $(foreach f,$(ALL_C),$(if $(findstring /smelt-,$(f)),$(f)))
KIT_SRC   := $(filter formats/tool/%,$(ALL_C))
LIB_SRC   := $(filter-out $(TOOL_SRC) $(KIT_SRC),$(ALL_C))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB       := $(LIBDIR)/libsmelt.a
# formats/tool/: what only the mains use (options, terminal progress, the error tail)
KIT       := $(LIBDIR)/libsmelt-tool.a
TOOLS     := $(foreach s,$(TOOL_SRC),$(BINDIR)/$(basename $(notdir $(s))))

TEST_SRC    := $(wildcard tests/*/test_*.c)
TEST_COMMON := $(wildcard tests/common/*.c)
TEST_BINS   := $(TEST_SRC:%.c=$(BUILD)/%)
TEST_COBJ   := $(TEST_COMMON:%.c=$(BUILD)/%.o)

FUZZ_SRC    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY := $(FUZZ_SRC:%.c=$(BUILD)/%-replay)

BENCH_SRC   := $(wildcard tests/bench/bench_*.c)
BENCH_BINS  := $(BENCH_SRC:%.c=$(BUILD)/%)
# generators the bench scripts call (the synthetic Mixtral layer), not benchmarks themselves
BENCH_TOOLS := $(BUILD)/tests/bench/make_layer

# ISA-specific kernels: files named *_avx2.c get the AVX2/FMA/F16C flags; they are only
# called after runtime CPU detection (formats/base/cpu.c).
$(BUILD)/%_avx2.o: CFLAGS += -mavx2 -mfma -mf16c
# search.c: sqrt never sets errno here (arguments >= 0), so its loops can vectorize
$(BUILD)/quant/search.o: CFLAGS += -fno-math-errno

.PHONY: all lib tools tests test check bench demo install clean help lines oracle fuzz fuzz-run

# Build the library and every tool (default).
all: tools

lib: $(LIB)
tools: $(TOOLS)

$(BUILD)/%.o: %.c Makefile
	@mkdir -p $(dir $@)
	$(call say,CC,$<)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(call say,AR,$@)rm -f $@ && $(AR) rcs $@ $^

$(KIT): $(KIT_SRC:%.c=$(BUILD)/%.o)
	@mkdir -p $(dir $@)
	$(call say,AR,$@)rm -f $@ && $(AR) rcs $@ $^

# One link rule per tool: bin/smelt-X from the smelt-X.c found anywhere in the tree.
define tool_rule
$(BINDIR)/$(basename $(notdir $(1))): $(BUILD)/$(1:.c=.o) $(KIT) $(LIB)
	@mkdir -p $$(dir $$@)
	$$(call say,LINK,$$@)$$(CC) $$(LDFLAGS) $$^ $$(LDLIBS) -o $$@
endef
$(foreach s,$(TOOL_SRC),$(eval $(call tool_rule,$(s))))

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_COBJ) $(KIT) $(LIB)
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcriterion -o $@

# Fuzz targets replayed over tests/fuzz/corpus/<parser>/ (plain main, any compiler).
$(BUILD)/tests/fuzz/fuzz_%-replay: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay.o $(KIT) $(LIB)
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# Build every test and benchmark binary.
tests: $(TOOLS) $(TEST_BINS) $(BENCH_BINS) $(BENCH_TOOLS) $(FUZZ_REPLAY)

# Run the unit, oracle, fuzz-corpus and end-to-end tests (release build), and the house rules.
test: tests
	$(Q)tests/lint-lines
	$(Q)SMELT_BIN=$(CURDIR)/$(BINDIR) SMELT_BUILD=$(CURDIR)/$(BUILD) tests/run-tests $(TEST_BINS) $(FUZZ_REPLAY)

# The same tests under AddressSanitizer + UndefinedBehaviorSanitizer.
check:
	$(Q)$(MAKE) --no-print-directory FLAVOR=asan test

# Benchmarks: throughput and memory, with ratios against llama.cpp where it is installed.
bench: tools $(BENCH_BINS) $(BENCH_TOOLS)
	$(Q)SMELT_BIN=$(CURDIR)/$(BINDIR) SMELT_BUILD=$(CURDIR)/$(BUILD) tests/bench/run-bench $(BENCH_BINS)

# The main job on samples/: the whole pipeline from a base model + LoRA to a quality table.
demo: tools
	$(Q)SMELT_BIN=$(CURDIR)/$(BINDIR) samples/demo.sh

# libFuzzer sessions (clang) on every parser, FUZZ_TIME seconds each (default 60); new
# inputs land in tests/fuzz/corpus/<parser>/, crashers in build/fuzz/crash-*.
FUZZ_TIME ?= 60
fuzz:
	$(Q)$(MAKE) --no-print-directory FLAVOR=fuzz fuzz-run
fuzz-run: $(LIB) $(FUZZ_SRC:%.c=$(BUILD)/%.o)
	$(Q)for f in $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%); do \
	  $(CC) -fsanitize=fuzzer,address,undefined $(BUILD)/tests/fuzz/fuzz_$$f.o $(LIB) $(LDLIBS) -o $(BUILD)/fuzz_$$f || exit 1; \
	  mkdir -p tests/fuzz/corpus/$$f; \
	  $(BUILD)/fuzz_$$f -max_total_time=$(FUZZ_TIME) -artifact_prefix=$(BUILD)/crash-$$f- tests/fuzz/corpus/$$f || exit 1; \
	done

# Install the llama.cpp oracle into .oracle/ for the tests: node-llama-cpp from npm
# (prebuilt libllama/libggml-base + the source bundle), then its CLI tools built from source.
oracle:
	$(Q)tests/oracle/install
	$(Q)tests/oracle/build-tools

# Install tools, library and headers under PREFIX.
install: tools
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/smelt
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/
	for h in $$(find formats convert quant verify -name '*.h' ! -name '*_int.h' ! -path 'formats/tool/*'); do \
	  install -D -m 644 $$h $(DESTDIR)$(PREFIX)/include/smelt/$$h; done

# Fail if a C file exceeds 1,500 lines or quant/ includes verify/.
lines:
	$(Q)tests/lint-lines

# Remove build products (keeps .oracle/).
clean:
	rm -rf build bin lib

# List the targets with what each does.
help:
	@awk '/^# /{ d = d (d ? " " : "") substr($$0, 3); next } \
	      /^[a-z][a-z-]*:/ && d { split($$0, t, ":"); printf "  %-8s %s\n", t[1], d } { d = "" }' Makefile

-include $(LIB_OBJ:.o=.d) $(TOOL_SRC:%.c=$(BUILD)/%.d) $(TEST_SRC:%.c=$(BUILD)/%.d) $(TEST_COMMON:%.c=$(BUILD)/%.d)
.SECONDARY:
