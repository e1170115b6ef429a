# Sluice: two commands do everything on a fresh Debian 12 machine (as root):
#   make demo   installs what is missing, builds, starts etcd + three Greeter backends + client
#   make test   installs what is missing, builds, runs every test with CTest
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all build install-deps demo test check-sanitizers check-asan clean format experiments fuzz package

all: build

install-deps:
	@bash scripts/install-deps.sh

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: install-deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600

# The concurrency tests of the pure (gRPC-free) parts under ThreadSanitizer. Debian's gRPC is not
# built with TSan, so tests that drive real gRPC channels would only report its internals.
SANITIZER_ASAN_OPTIONS ?= detect_stack_use_after_return=0:abort_on_error=0:halt_on_error=1
SANITIZER_UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
TSAN_DIR ?= build-tsan
TSAN_TESTS ?= balancer_test core_test
check-sanitizers: install-deps
	cmake -S . -B $(TSAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_SANITIZE=thread -DSLUICE_BUILD_BENCH=OFF
	cmake --build $(TSAN_DIR) -j $(JOBS) --target $(TSAN_TESTS)
	set -e; for t in $(TSAN_TESTS); do \
	  bin=$$(find $(TSAN_DIR)/tests -type f -name $$t -perm -u+x | head -1); \
	  echo "== $$bin (ThreadSanitizer)"; TSAN_OPTIONS=halt_on_error=1 $$bin; done

# libFuzzer targets (clang, with ASan and UBSan), each run for FUZZ_SECONDS from the seed corpus
# in fuzz/corpus/<name>; a crash fails the run and leaves its input in $(FUZZ_DIR).
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 30
FUZZERS ?= naming_value_fuzzer target_fuzzer proxy_headers_fuzzer proxy_h2_fuzzer config_fuzzer
fuzz: install-deps
	cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ -DSLUICE_FUZZ=ON -DSLUICE_BUILD_TESTS=OFF -DSLUICE_BUILD_BENCH=OFF
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target $(FUZZERS)
	set -e; for f in $(FUZZERS); do \
	  corpus=fuzz/corpus/$${f%_fuzzer}; work=$$(mktemp -d); \
	  echo "== $$f for $(FUZZ_SECONDS)s from $$corpus"; \
	  if ! $(FUZZ_DIR)/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	      -artifact_prefix=$(FUZZ_DIR)/$$f- $$work $$corpus > $$work.log 2>&1; then \
	    tail -60 $$work.log; echo "$$f: crashed; the input is in $(FUZZ_DIR)/$$f-*"; exit 1; fi; \
	  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" $$work.log || true; \
	  rm -rf $$work $$work.log; done

# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer (project code
# instrumented; Debian's gRPC is not, but its allocations are still checked).
ASAN_DIR ?= build-asan
check-asan: install-deps
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_SANITIZE=address,undefined -DSLUICE_BUILD_BENCH=OFF
	cmake --build $(ASAN_DIR) -j $(JOBS)
	cd $(ASAN_DIR) && SLUICE_SANITIZED=1 ASAN_OPTIONS=$(SANITIZER_ASAN_OPTIONS) \
	  UBSAN_OPTIONS=$(SANITIZER_UBSAN_OPTIONS) \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan.supp \
	  ctest --output-on-failure -j $(JOBS) --timeout 900 -E '^ChaosTest\.'
	# The chaos soak last and alone: its deadlines scale x4 under sanitizers, but it still
	# needs the cores to itself to keep the timeline it judges failures by.
	cd $(ASAN_DIR) && SLUICE_SANITIZED=1 ASAN_OPTIONS=$(SANITIZER_ASAN_OPTIONS) \
	  UBSAN_OPTIONS=$(SANITIZER_UBSAN_OPTIONS) \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan.supp \
	  ctest --output-on-failure --timeout 900 -R '^ChaosTest\.'

# Debian packages from the install rules (CPack): $(BUILD_DIR)/package/sluice_*.deb (the command
# and its systemd units) and libsluice-dev_*.deb (the client library for C++ programs).
package: build
	cd $(BUILD_DIR) && cpack -G DEB -B $(CURDIR)/$(BUILD_DIR)/package
	@ls -l $(BUILD_DIR)/package/*.deb

demo: build
	@bash scripts/demo.sh $(BUILD_DIR)

format:
	clang-format -i $$(git ls-files '*.h' '*.cc')

clean:
	rm -rf $(BUILD_DIR)

# The seed's experiments under an L4 balancer, the client library and sluice proxy; writes
# results/<date>/report.md with charts and puts the headline figures into the README.
experiments: build
	python3 experiments/run.py --update-readme
