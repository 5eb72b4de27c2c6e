# rabbitmq-ha: see README.md. Everything is built into this folder: the
# Pulumi CLI into bin/, the stack state into .state/.
SHELL := /bin/bash
STACK ?= dev
STATE := $(CURDIR)/.state
export PATH := $(CURDIR)/bin:$(PATH)
export PULUMI_BACKEND_URL ?= file://$(STATE)/backend
export PULUMI_CONFIG_PASSPHRASE_FILE ?= $(STATE)/passphrase
export PULUMI_SKIP_UPDATE_CHECK := true
export PULUMI_DIY_BACKEND_NO_LEGACY_WARNING := true
PULUMI := bin/pulumi

.PHONY: up preview refresh destroy deps images dev-images test unit integration lint ci clean bench bench-migration bench-swarm reliability smoke env secret admin-password outputs next

# The stack config Pulumi reads: the tracked Pulumi.$(STACK).yaml (plain
# settings) merged with the generated secrets in .state/ (tools/stackconfig).
# So make never writes a tracked file, and no secret is ever committed.
STACKFILE := $(STATE)/Pulumi.$(STACK).yaml
SECRETS := $(STATE)/secrets.$(STACK).yaml
CONFIG := --stack $(STACK) --config-file $(STACKFILE)

## up: install the system packages, build the dev stack's images and the CLI, create the stack with generated secrets, pulumi up
up: deps dev-images $(PULUMI) stack
	$(PULUMI) up --yes --skip-preview $(CONFIG)
	@$(MAKE) -s next

## preview: what `pulumi up` would change (the PR-review command)
preview: $(PULUMI) stack
	$(PULUMI) preview --diff $(CONFIG)

## refresh: read the containers' real state (after a change made by hand)
refresh: $(PULUMI) stack
	$(PULUMI) refresh --yes $(CONFIG)

## destroy: remove the stack's containers, network and (unless retained) volumes.
## --run-program: the rolling replacement's delete hooks live in the program
destroy: $(PULUMI) stack
	$(PULUMI) destroy --yes --run-program $(CONFIG)

## smoke: prove the running stack works: publish with confirms through HAProxy (AMQP, AMQPS), consume from a node, scrape every node's metrics
smoke: $(PULUMI)
	@$(PULUMI) stack output --json --show-secrets --stack $(STACK) | go run ./smoke

## outputs: the stack outputs (secrets blinded)
outputs: $(PULUMI)
	@$(PULUMI) stack output --stack $(STACK)

## admin-password: print the generated admin password
admin-password: $(PULUMI)
	@$(PULUMI) config get adminPassword $(CONFIG)

## env: the environment make runs the CLI with; eval "$$(make -s env)", then run pulumi by hand
env:
	@printf 'export PATH=%q:"$$PATH"\n' "$(CURDIR)/bin"
	@printf 'export PULUMI_BACKEND_URL=%q\n' "$(PULUMI_BACKEND_URL)"
	@printf 'export PULUMI_CONFIG_PASSPHRASE_FILE=%q\n' "$(PULUMI_CONFIG_PASSPHRASE_FILE)"
	@printf 'export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DIY_BACKEND_NO_LEGACY_WARNING=true\n'
	@printf '# stack %s: plain settings in Pulumi.%s.yaml; up, preview, refresh and destroy take --stack %s --config-file %q\n' "$(STACK)" "$(STACK)" "$(STACK)" "$(STACKFILE)"

## secret: set a secret, e.g. printf %s 'a-long-password' | make secret KEY=adminPassword
secret: $(PULUMI) stack
	@test -n "$(KEY)" || { echo "usage: printf %s VALUE | make secret KEY=name"; exit 64; }
	@$(PULUMI) config set --secret $(KEY) --stack $(STACK) --config-file $(SECRETS)
	@go run ./tools/stackconfig Pulumi.$(STACK).yaml $(SECRETS) $(STACKFILE)

next:
	@echo
	@echo "The $(STACK) stack is up. Its outputs:"
	@$(PULUMI) stack output --stack $(STACK)
	@echo
	@echo "  admin user:       $$($(PULUMI) stack output adminUser --stack $(STACK)); password: make -s admin-password"
	@echo "  prove it works:   make smoke"
	@echo "  the CLI by hand:  eval \"\$$(make -s env)\"; pulumi stack output --stack $(STACK)"
	@echo "  tear it down:     make destroy"

## deps: the Debian packages make and the tests need (tools/system-deps.sh; root or sudo)
deps:
	@tools/system-deps.sh

## images: every local image the tests use: RabbitMQ 4.3/3.10/4.0 and HAProxy 3.2/2.6/3.0, from Debian sid, bookworm and trixie.
## The three suites build side by side: debootstrap mostly waits on the mirror and the disk
## (measured here, all three at once on 2 cores: sid done after 164 s, trixie 202 s, bookworm
## with the tests' Docker host 299 s)
SUITES := sid bookworm trixie
images: deps
	@pids=(); for s in $(SUITES); do images/build.sh $$s & pids+=($$!); done; \
		failed=0; for p in "$${pids[@]}"; do wait $$p || failed=1; done; exit $$failed

## dev-images: the dev stack's pair, RabbitMQ 4.3 and HAProxy 3.2 (Debian sid)
dev-images: deps
	images/build.sh sid

# The CLI's version is stamped as its release build does: the Automation API
# reads it to decide which flags the CLI supports.
$(PULUMI): tools/pulumicli/go.mod tools/pulumicli/go.sum
	cd tools/pulumicli && v=$$(go list -m -f '{{.Version}}' github.com/pulumi/pulumi/pkg/v3) && \
		go build -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$$v" \
			-o ../../$(PULUMI) github.com/pulumi/pulumi/pkg/v3/cmd/pulumi

## stack: the local backend, a passphrase, the stack, its generated secrets, and the merged stack config
.PHONY: stack
stack: $(PULUMI)
	@mkdir -p $(STATE)/backend
	@[ -s $(STATE)/passphrase ] || (umask 077; head -c 24 /dev/urandom | base64 > $(STATE)/passphrase)
	@# A new stack is created from a scratch folder, so the encryption salt
	@# `stack init` writes lands in .state/, not in the tracked stack file.
	@if ! $(PULUMI) stack ls --json 2>/dev/null | grep -q '"name": *"$(STACK)"'; then \
		tmp=$$(mktemp -d) && cp Pulumi.yaml "$$tmp/" && \
		(cd "$$tmp" && $(CURDIR)/$(PULUMI) stack init $(STACK) --non-interactive >/dev/null) && \
		mv "$$tmp/Pulumi.$(STACK).yaml" $(SECRETS) && chmod 0600 $(SECRETS) && rm -rf "$$tmp" && \
		echo "created stack $(STACK) (state in $(STATE)/backend)"; \
	fi
	@[ -s $(SECRETS) ] || { echo "stack $(STACK) exists but $(SECRETS) (its secrets and their salt) is missing: restore it, or remove the stack (pulumi stack rm $(STACK))"; exit 1; }
	@for key in erlangCookie adminPassword statsPassword; do \
		grep -q "^  rabbitmq-ha:$$key:" $(SECRETS) || { \
		head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32 | \
			$(PULUMI) config set --secret $$key --stack $(STACK) --config-file $(SECRETS) && \
		echo "generated $$key"; }; \
	done
	@go run ./tools/stackconfig Pulumi.$(STACK).yaml $(SECRETS) $(STACKFILE)

## test: the README's test command; CI runs it through .ci/run. The
## container tests run verbosely, so a long run reports each test and its
## measurements as it goes.
## E2E_LINES: the lines TestIntegrationE2E and TestIntegrationE2ERolling run on (all, or
## comma-separated names such as 4.3-quorum); the other integration tests run every line
E2E_LINES ?= all
test: deps lint images $(PULUMI)
	go test -count=1 $$(go list ./... | grep -v /tests$$)
	go test -count=1 -timeout 85m -parallel 3 -v ./tests -args -e2e.lines=$(E2E_LINES)

## unit: the tests that need neither Docker nor plugins
unit:
	go test -short -count=1 ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: format the files above"; exit 1; }
	go vet ./...
	shellcheck images/build.sh images/*/docker-entrypoint.sh tools/system-deps.sh .ci/run

## bench: the stack against the docker-compose recipe and the floor (3 plain docker run), on 3.10 and 4.3 (LINES=...); writes docs/BENCHMARKS.md
LINES ?= 3.10-mirrored,4.3-quorum
bench: images $(PULUMI)
	go run ./bench -lines $(LINES)

## bench-migration: the blue-green move, the compose recipe on 3.10 (10,000 messages) into the stack on 4.3 (migrateFrom); writes its part of docs/BENCHMARKS.md
bench-migration: images $(PULUMI)
	go run ./bench -migration

## bench-swarm: the stack on a Swarm of three simulated hosts (4.3): time to ready, and the loss of the host holding a queue's leader; writes its part of docs/BENCHMARKS.md
bench-swarm: images $(PULUMI)
	go run ./bench -swarm

## reliability: the fault matrix (partitions, HAProxy killed and restarted) on every line (LINES=all or names); writes docs/RELIABILITY.md. make test runs it on the default line
RELIABILITY_LINES ?= all
reliability: images
	go test -count=1 -timeout 90m -v -run TestIntegrationReliability ./tests \
		-args -reliability.lines=$(RELIABILITY_LINES) -reliability.report=$(CURDIR)/docs/RELIABILITY.md

ci:
	bash .ci/run

clean:
	rm -rf bin
