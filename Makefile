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

.PHONY: up preview destroy images test unit integration lint ci clean bench

## up: build the images and the CLI, create the stack with generated secrets, pulumi up
up: images $(PULUMI) stack
	$(PULUMI) up --yes --stack $(STACK)

## preview: what `pulumi up` would change (the PR-review command)
preview: $(PULUMI) stack
	$(PULUMI) preview --diff --stack $(STACK)

## destroy: remove the stack's containers, network and (unless retained) volumes.
## --run-program: the rolling replacement's delete hooks live in the program
destroy: $(PULUMI)
	$(PULUMI) destroy --yes --run-program --stack $(STACK)

## images: the local RabbitMQ 3.10/4.0 and HAProxy images, from Debian packages
images:
	images/build.sh bookworm
	images/build.sh trixie

# The CLI's version is stamped as its release build does: the Automation API
# reads it to decide which flags the CLI supports.
$(PULUMI): tools/pulumicli/go.mod tools/pulumicli/go.sum
	cd tools/pulumicli && v=$$(go list -m -f '{{.Version}}' github.com/pulumi/pulumi/pkg/v3) && \
		go build -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$$v" \
			-o ../../$(PULUMI) github.com/pulumi/pulumi/pkg/v3/cmd/pulumi

## stack: the local backend, a passphrase, the stack and its secrets (generated once)
.PHONY: stack
stack: $(PULUMI)
	@mkdir -p $(STATE)/backend
	@[ -s $(STATE)/passphrase ] || (umask 077; head -c 24 /dev/urandom | base64 > $(STATE)/passphrase)
	@$(PULUMI) stack select $(STACK) 2>/dev/null || $(PULUMI) stack init $(STACK)
	@for key in erlangCookie adminPassword statsPassword; do \
		$(PULUMI) config get $$key --stack $(STACK) >/dev/null 2>&1 || \
		head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32 | \
			$(PULUMI) config set --secret $$key --stack $(STACK); \
	done

## test: the README's test command; CI runs it through .ci/run. The
## container tests run verbosely, so a long run reports each test and its
## measurements as it goes.
test: lint images $(PULUMI)
	go test -count=1 $$(go list ./... | grep -v /tests$$)
	go test -count=1 -timeout 80m -v ./tests

## unit: the tests that need neither Docker nor plugins
unit:
	go test -short -count=1 ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: format the files above"; exit 1; }
	go vet ./...
	shellcheck images/build.sh images/*/docker-entrypoint.sh .ci/run

## bench: the stack against the docker-compose recipe; writes docs/BENCHMARKS.md
bench: images $(PULUMI)
	@command -v docker-compose >/dev/null || { apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null; }
	go run ./bench

ci:
	bash .ci/run

clean:
	rm -rf bin
