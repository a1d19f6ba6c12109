# Sluice — the commands the README names. Every target sets up what it needs first
# (ops/bootstrap is idempotent and takes about two seconds once everything is in place).

SHELL := /bin/bash
BROKER_PORT ?= 19092
TEST_BROKER_PORT ?= 19093
SWIFT_BUILD_FLAGS ?=

.PHONY: all bootstrap build test demo broker-start broker-stop broker-status format clean

all: build

bootstrap:
	ops/bootstrap

build: bootstrap
	swift build $(SWIFT_BUILD_FLAGS)

# Sets up, starts a private broker on $(TEST_BROKER_PORT), runs every test (unit, mock
# cluster, and integration against the real broker and kcat), and stops that broker.
test: bootstrap
	ops/test

# The main job: broker, two workers on the real model, sample questions, audit statistics.
demo:
	ops/demo

broker-start: bootstrap
	SLUICE_BROKER_PORT=$(BROKER_PORT) ops/broker start

broker-stop:
	SLUICE_BROKER_PORT=$(BROKER_PORT) ops/broker stop

broker-status:
	SLUICE_BROKER_PORT=$(BROKER_PORT) ops/broker status

format:
	swift format --in-place --recursive Sources Tests Package.swift

clean:
	rm -rf .build .run
