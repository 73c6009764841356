# cellweave: the two commands a new user runs are `make demo` and `make test`.
# Both set up what they need (Debian packages for R, the Rust build, R CMD INSTALL) and are
# safe to run again.

SHELL := /bin/bash
# extendr-ffi must find R 4.2 when cargo runs outside R (else it assumes a newer R).
export R_HOME ?= /usr/lib/R
export R_INCLUDE_DIR ?= /usr/share/R/include
export PATH := $(PATH):$(HOME)/.cargo/bin

# Reuse a Cargo target dir outside the clone when one exists (never required).
SHARED_TARGET ?= $(HOME)/.cache/cellweave-target
ifeq ($(origin CARGO_TARGET_DIR), undefined)
  ifneq ($(wildcard $(SHARED_TARGET)),)
    export CARGO_TARGET_DIR := $(SHARED_TARGET)
  endif
endif

# Where the package is installed: the site library by default; RLIB=dir for a private one.
RLIB ?=
RLIB_FLAG := $(if $(RLIB),--library=$(RLIB),)
RLIBS_ENV := $(if $(RLIB),R_LIBS=$(abspath $(RLIB)),)

CARGO_MANIFEST := src/rust/Cargo.toml
RUST_TEST_PKGS := -p cellweave-core -p cellweave-bench

APT_PACKAGES := r-base-dev r-cran-matrix r-cran-testthat r-bioc-singlecellexperiment r-bioc-scater \
  r-cran-seurat r-cran-ggplot2 r-cran-uwot r-cran-patchwork
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: deps install test test-rust test-r demo wrappers check-wrappers clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@command -v cargo >/dev/null || { echo "cargo (Rust >= 1.95) is required: install it with rustup"; exit 1; }

install: deps
	@if [ -n "$(RLIB)" ]; then mkdir -p $(RLIB); fi
	R CMD INSTALL $(RLIB_FLAG) .

# Regenerate R/extendr-wrappers.R from the extendr module metadata.
wrappers:
	cargo run --release --quiet -p cellweave-r --bin document --manifest-path $(CARGO_MANIFEST) > R/extendr-wrappers.R

# The committed R/extendr-wrappers.R must match the Rust module.
check-wrappers:
	@cargo run --release --quiet -p cellweave-r --bin document --manifest-path $(CARGO_MANIFEST) 2>/dev/null \
	  | diff -q - R/extendr-wrappers.R > /dev/null \
	  || { echo "R/extendr-wrappers.R is out of date: run make wrappers"; exit 1; }

test-rust: deps
	cargo test --release $(RUST_TEST_PKGS) --manifest-path $(CARGO_MANIFEST)
	$(MAKE) check-wrappers

test-r: install
	$(RLIBS_ENV) Rscript tests/run-tests.R

test: test-rust test-r

demo: install
	$(RLIBS_ENV) Rscript inst/scripts/demo.R demo-out

clean:
	rm -rf src/rust/target src/*.o src/*.so demo-out
