# pam_gateway — build, test, install, demo.
# `make demo` and `make test` install the Debian packages they need when run
# as root, and name them otherwise.

SHELL := /bin/bash
# rustup's cargo when it is not on PATH (sudo resets PATH).
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
PREFIX ?= /usr
DESTDIR ?=
# pam-gatewayd's unit (installed, never enabled).
SYSTEMD_UNIT_DIR ?= /lib/systemd/system
PAM_MODULE_DIR ?= $(shell scripts/pam-module-dir.sh 2>/dev/null || echo /usr/lib64/security)
# Cargo's target directory: $(CARGO_TARGET_DIR) when set.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
RELEASE := $(TARGET_DIR)/release
# The module as it ships: the module crate is a cdylib alone, so the release
# profile's LTO applies; cargo names it libpam_gateway.so, PAM wants
# pam_gateway.so. Next to it, the direct library it loads when it sends a
# message itself (src/direct.rs): cargo's libpam_gateway_direct.so,
# installed as pam_gateway_direct.so.
MODULE := $(RELEASE)/pam_gateway.so
DIRECT := $(RELEASE)/pam_gateway_direct.so
# Copies cargo's libpam_gateway.so and libpam_gateway_direct.so in DIR to
# DIR/pam_gateway.so and DIR/pam_gateway_direct.so (atomically).
name-module = for n in pam_gateway pam_gateway_direct; do \
	cp $(1)/lib$$n.so $(1)/$$n.so.tmp && mv $(1)/$$n.so.tmp $(1)/$$n.so || exit 1; done

.PHONY: all build test lint unit demo install uninstall clean cross deb test-arm soak fuzz bench bench-arm man hot-text

all: build

build:
	@scripts/deps.sh build
	# The module and its direct library in a cargo run of their own: cargo
	# unifies the features of shared dependencies over the packages of one
	# run, and with the CLI's the module's code is not the code that
	# module/hot-text.ld lists, nor what make test and make bench run.
	$(CARGO) build --release --locked -p pam-gateway-module -p pam-gateway-direct
	$(CARGO) build --release --locked --workspace --exclude pam-gateway-module --exclude pam-gateway-direct
	$(call name-module,$(RELEASE))

# Everything CI runs: formatting, clippy, unit tests, the loopback gateway
# tests, the real-libpam tests and the real-client tests (sshd, sudo, login;
# root, private mount namespaces), then the real-libpam tests again on the
# release module. Tests that need root are #[ignore]d for everyone else
# (test-support/src/root.rs); --include-ignored runs them here.
test:
	@scripts/deps.sh test
	$(MAKE) --no-print-directory lint
	# The real-libpam tests load the module and run the CLI: build both first.
	$(CARGO) build --locked
	$(CARGO) test --locked --workspace --all-targets -- --include-ignored
	# And the module as it ships (release profile, LTO) through real libpam.
	$(CARGO) build --release --locked -p pam-gateway-module -p pam-gateway-direct
	$(call name-module,$(RELEASE))
	PGW_TEST_MODULE=$(abspath $(MODULE)) $(CARGO) test --locked --test pam_real -- --include-ignored

# The long-lived host at full length: one process, 10,000 PAM cycles against
# the loopback fake (`make test` runs 200). Prints fds/threads/RSS per tenth.
SOAK_CYCLES ?= 10000
soak:
	@scripts/deps.sh test
	$(CARGO) build --locked
	PGW_SOAK_CYCLES=$(SOAK_CYCLES) $(CARGO) test --locked --test soak -- --include-ignored --nocapture

# cargo-fuzz targets, FUZZ_SECONDS each, from the hand-written fuzz/seeds
# and fuzz/corpus. What a run finds goes into fuzz/corpus, which is then
# minimised again (cargo fuzz cmin: the fewest inputs that reach every edge
# it reached), so the corpus in git stays small.
# Needs a nightly toolchain and cargo-fuzz (installed here if missing).
# Not part of `make test` or CI.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := gateway_toml users_toml state_file prompt_answer wire_frame
FUZZ_LIMITS := -timeout=10 -rss_limit_mb=2048
FUZZ_CMIN := -set_cover_merge=1 -use_counters=0
fuzz:
	@scripts/deps.sh build
	@$(CARGO) +nightly --version >/dev/null 2>&1 || \
		{ echo "fuzz: needs a nightly toolchain: rustup toolchain install nightly" >&2; exit 1; }
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install --locked cargo-fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t && \
		$(CARGO) +nightly fuzz run $$t corpus/$$t seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) $(FUZZ_LIMITS) && \
		$(CARGO) +nightly fuzz cmin $$t corpus/$$t -- $(FUZZ_CMIN) $(FUZZ_LIMITS) || exit 1; \
	done

lint:
	@if $(CARGO) fmt --version >/dev/null 2>&1; then \
		$(CARGO) fmt --all --check; \
	else echo "lint: cargo fmt not installed (rustup component add rustfmt); skipped"; fi
	@if $(CARGO) clippy --version >/dev/null 2>&1; then \
		$(CARGO) clippy --locked --workspace --all-targets -- -D warnings; \
	else echo "lint: cargo clippy not installed (rustup component add clippy); skipped"; fi
	@scripts/lint-shape.sh

# pam-gateway(8), generated from the CLI's clap definitions and the prose
# in cli/doc/pam-gateway.8.in (`pam-gateway generate man`, hidden from
# --help); cli/tests/man_page.rs fails when man/pam-gateway.8 is not this.
man:
	$(CARGO) run --locked --quiet -p pam-gateway-cli -- generate man > man/pam-gateway.8.tmp
	mv man/pam-gateway.8.tmp man/pam-gateway.8

# Raspberry Pi builds (docs/packaging.md): module, CLI and .deb for
# Raspberry Pi OS 64-bit (aarch64, arm64) and 32-bit (armv7, armhf), with
# Debian's rustc-web and cross gcc; nothing is downloaded by rustup.
# Binaries in target/cross/<triple>/release, packages in target/deb.
CROSS_TARGETS ?= aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf
cross:
	@scripts/deps.sh cross $(CROSS_TARGETS)
	scripts/cross.sh $(CROSS_TARGETS)

# The Debian package for this machine, in target/deb (docs/packaging.md).
deb: build
	@scripts/deps.sh deb
	scripts/mkdeb.sh --bin-dir $(RELEASE) --out $(TARGET_DIR)/deb

# The aarch64 and armv7 builds through Debian's arm64 and armhf libpam
# under qemu-user, and their .debs through dpkg; root, like make test.
# ARM_TARGETS=aarch64-unknown-linux-gnu for one.
ARM_TARGETS ?= $(CROSS_TARGETS)
test-arm:
	@scripts/deps.sh test-arm $(ARM_TARGETS)
	scripts/test-arm.sh $(ARM_TARGETS)

# What one login costs next to pam_permit and pam_google_authenticator
# (BENCHMARKS.md). Root; nothing on the host changes. Not a test: it never
# fails because a machine is slow. BENCH_RUNS, BENCH_CYCLES: sizes.
bench:
	@scripts/deps.sh bench
	$(CARGO) build --release --locked --example fake_telegram --example pam_bench --example pam_loop --example bench_slapd --example delay_proxy
	$(CARGO) build --release --locked -p pam-gateway-module -p pam-gateway-direct
	$(CARGO) build --release --locked -p pam-gateway-daemon
	$(call name-module,$(RELEASE))
	@scripts/bench.sh

# Regenerate module/hot-text.ld (the module's login code, placed together by
# the release link) from callgrind runs of every case of `make bench`.
hot-text:
	@scripts/deps.sh hot-text
	$(CARGO) build --release --locked --example fake_telegram --example pam_bench --example pam_loop --example bench_slapd --example delay_proxy
	$(CARGO) build --release --locked -p pam-gateway-daemon
	@scripts/hot-text.sh

# The same for the aarch64 build of `make cross`, under qemu-user (relative
# figures only); root.
bench-arm:
	@scripts/deps.sh bench-arm
	$(CARGO) build --release --locked --example fake_telegram --example pam_bench
	@scripts/bench-arm.sh

demo:
	@scripts/deps.sh demo
	$(CARGO) build --release --locked --examples
	$(CARGO) build --release --locked -p pam-gateway-module -p pam-gateway-direct
	$(call name-module,$(RELEASE))
	@scripts/demo.sh

# Installs the module into this system's PAM module directory and the CLI
# into /usr/sbin. Never edits /etc/pam.d: see README "Enabling it".
install: build
	install -d -m 755 $(DESTDIR)$(PAM_MODULE_DIR)
	install -m 644 $(MODULE) $(DESTDIR)$(PAM_MODULE_DIR)/pam_gateway.so
	install -m 644 $(DIRECT) $(DESTDIR)$(PAM_MODULE_DIR)/pam_gateway_direct.so
	install -d -m 755 $(DESTDIR)$(PREFIX)/sbin
	install -m 755 $(RELEASE)/pam-gateway $(DESTDIR)$(PREFIX)/sbin/pam-gateway
	install -m 755 $(RELEASE)/pam-gatewayd $(DESTDIR)$(PREFIX)/sbin/pam-gatewayd
	# pam-gatewayd's unit, not enabled: docs/approve.md.
	install -d -m 755 $(DESTDIR)$(SYSTEMD_UNIT_DIR)
	install -m 644 packaging/pam-gatewayd.service $(DESTDIR)$(SYSTEMD_UNIT_DIR)/pam-gatewayd.service
	install -d -m 700 $(DESTDIR)/etc/pam_gateway
	install -d -m 700 $(DESTDIR)/var/lib/pam_gateway
	install -d -m 755 $(DESTDIR)$(PREFIX)/share/doc/pam-gateway/examples/pam.d \
		$(DESTDIR)$(PREFIX)/share/doc/pam-gateway/examples/sshd_config.d \
		$(DESTDIR)$(PREFIX)/share/doc/pam-gateway/examples/webhook \
		$(DESTDIR)$(PREFIX)/share/doc/pam-gateway/examples/ldap
	install -m 644 conf/*.toml $(DESTDIR)$(PREFIX)/share/doc/pam-gateway/examples/
	install -m 644 pam.d/* $(DESTDIR)$(PREFIX)/share/doc/pam-gateway/examples/pam.d/
	install -m 644 sshd_config.d/* $(DESTDIR)$(PREFIX)/share/doc/pam-gateway/examples/sshd_config.d/
	install -m 644 conf/webhook/*.toml $(DESTDIR)$(PREFIX)/share/doc/pam-gateway/examples/webhook/
	install -m 644 conf/ldap/* $(DESTDIR)$(PREFIX)/share/doc/pam-gateway/examples/ldap/
	install -d -m 755 $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 644 man/pam_gateway.8 man/pam-gateway.8 man/pam-gatewayd.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 644 man/gateway.toml.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	@echo "Installed $(PAM_MODULE_DIR)/pam_gateway.so (and its pam_gateway_direct.so), $(PREFIX)/sbin/pam-gateway and $(PREFIX)/sbin/pam-gatewayd (its unit not enabled)."
	@echo "Next: pam-gateway configure telegram; then see README 'Enabling it'."

uninstall:
	rm -f $(DESTDIR)$(PAM_MODULE_DIR)/pam_gateway.so $(DESTDIR)$(PAM_MODULE_DIR)/pam_gateway_direct.so \
		$(DESTDIR)$(PREFIX)/sbin/pam-gateway \
		$(DESTDIR)$(PREFIX)/sbin/pam-gatewayd $(DESTDIR)$(SYSTEMD_UNIT_DIR)/pam-gatewayd.service
	rm -rf $(DESTDIR)$(PREFIX)/share/doc/pam-gateway
	rm -f $(DESTDIR)$(PREFIX)/share/man/man8/pam_gateway.8 $(DESTDIR)$(PREFIX)/share/man/man8/pam-gateway.8 \
		$(DESTDIR)$(PREFIX)/share/man/man8/pam-gatewayd.8 \
		$(DESTDIR)$(PREFIX)/share/man/man5/gateway.toml.5

clean:
	$(CARGO) clean
