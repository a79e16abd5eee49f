# lakehub: `make up` runs the product on this machine; `make test` proves it.
# Everything installs itself on first use and is reused afterwards.
SHELL := /bin/bash
.DEFAULT_GOAL := help

SITE ?= examples/site.local.yaml
ARGS ?=
LAKEHUB_HOME ?= $(CURDIR)/.lakehub
export LAKEHUB_HOME
# where the chart repositories cannot be reached: a folder of the dependencies' archives
# (jupyterhub-4.4.0.tgz, dask-gateway-2026.3.0.tgz), beside the repository, never copied in
LAKEHUB_CHARTS ?= $(wildcard $(abspath $(CURDIR)/../shared/reference/charts))
export LAKEHUB_CHARTS
DEV_PY := $(LAKEHUB_HOME)/venvs/dev/bin/python

.PHONY: help up down clean status test lint bench deps system-deps envs proxy check-site warm-cache push-notebooks course-status course-report

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: SITE=$(SITE)  ARGS='<pytest arguments>'"

system-deps: ## Debian packages (python3.11, chromium, node/npm, passwd); needs root
	@bash scripts/ensure-system.sh

envs: system-deps ## the Python environments (dev/hub, analysis, rucio-server) from requirements/*.txt
	@bash scripts/ensure-env.sh dev
	@bash scripts/ensure-env.sh analysis
	@bash scripts/ensure-env.sh rucio-server

proxy: system-deps ## configurable-http-proxy from npm
	@bash scripts/ensure-node.sh

deps: envs proxy

up: deps ## start Rucio, demo data and JupyterHub on 127.0.0.1 (SITE=...)
	@$(DEV_PY) -m localstack.stack up --site $(SITE)

down: ## stop what `make up` started (by PID); keeps the data
	@if [ -x $(DEV_PY) ]; then $(DEV_PY) -m localstack.stack down; fi

clean: ## stop everything and remove the local state (users, data, secrets)
	@if [ -x $(DEV_PY) ]; then $(DEV_PY) -m localstack.stack clean; fi

status: ## which local processes are running
	@$(DEV_PY) -m localstack.stack status

check-site: envs ## validate a site file (SITE=...)
	@$(DEV_PY) -m sitefile $(SITE)

warm-cache: deps ## fill the shared cache before class (COURSE=course.yaml)
	@test -n "$(COURSE)" || { echo "usage: make warm-cache COURSE=examples/course.demo.yaml"; exit 2; }
	@$(DEV_PY) -m hub_services.cache.warm --site $(SITE) --course $(COURSE)

push-notebooks: envs ## publish a course's next revision to students (COURSE=name, SITE=..., clusters: FROM=folder)
	@test -n "$(COURSE)" || { echo "usage: make push-notebooks COURSE=<name from the site's courses:>"; exit 2; }
	@$(DEV_PY) -m courses push --site $(SITE) --course $(COURSE) $(if $(FROM),--from $(FROM))

course-status: ## which student has which revision of each course (SITE=...)
	@$(DEV_PY) -m courses status --site $(SITE)

course-report: envs ## a course's usage as HTML with plots and CSV (COURSE=name|all, SINCE=YYYY-MM-DD, TOKEN_FILE=)
	@test -n "$(COURSE)" || { echo "usage: make course-report COURSE=<name from the site's courses:>|all [SINCE=2026-09-01]"; exit 2; }
	@$(DEV_PY) -m courses report --site $(SITE) --course $(COURSE) $(if $(SINCE),--since $(SINCE)) $(if $(TOKEN_FILE),--token-file $(TOKEN_FILE)) $(if $(HUB_URL),--hub-url $(HUB_URL))

lint: envs ## ruff
	@$(LAKEHUB_HOME)/venvs/dev/bin/ruff check .
	@$(LAKEHUB_HOME)/venvs/dev/bin/ruff format --check .

test: deps helm k8s-tools ## run the tests (ARGS='-m e2e' or any pytest arguments)
	@$(DEV_PY) -m pytest $(ARGS)

.PHONY: images
images: ## container images: singleuser, hub (on a z2jh-equivalent base offline), proxy; podman, cached
	@bash scripts/build-images.sh

bench: deps ## performance figures, one JSON object per line on stdout
	@$(DEV_PY) -m benchmarks

# --- Kubernetes (helm/lakehub, docs/deploy.md) ------------------------------------------
# Also read: RELEASE, NAMESPACE, KUBE_CONTEXT, VALUES='extra.yaml ...', TIMEOUT, PURGE=1
.PHONY: helm template diff deploy undeploy

helm: ## the helm CLI, built once from its Go module and cached outside the repo
	@bash scripts/ensure-helm.sh >/dev/null

template: ## print the Kubernetes manifests for SITE (no cluster needed)
	@bash scripts/ensure-env.sh dev >&2
	@SITE=$(SITE) bash helm/deploy.sh template

diff: ## show what `make deploy` would change in the cluster (SITE=...)
	@bash scripts/ensure-env.sh dev >&2
	@SITE=$(SITE) bash helm/deploy.sh diff

deploy: ## render, validate, diff, then helm upgrade --install --wait --atomic (SITE=...)
	@bash scripts/ensure-env.sh dev >&2
	@SITE=$(SITE) bash helm/deploy.sh deploy

undeploy: ## remove the release; keeps user volumes, cache and hub db unless PURGE=1
	@bash scripts/ensure-env.sh dev >&2
	@SITE=$(SITE) bash helm/deploy.sh undeploy

.PHONY: k8s-tools cluster-up cluster-down cluster-status
k8s-tools: ## Kubernetes 1.36 programs, containerd, CNI, CoreDNS, node images; built once, cached outside the repo
	@bash scripts/ensure-k8s-tools.sh >/dev/null

# The whole lab: the node with lakehub's images, Rucio and the demo data on the node's
# address, the namespace, the Secrets and a site file (testkit/cluster.py); then `make deploy`.
cluster-up: envs k8s-tools images ## a one-node Kubernetes lab for `make deploy` on this machine (root; docs/deploy.md)
	@$(DEV_PY) -m testkit.cluster up

cluster-down: ## stop the lab (by PID) and remove what it added to the host
	@if [ -x $(DEV_PY) ]; then $(DEV_PY) -m testkit.cluster down; fi

cluster-status: ## is the one-node lab running
	@$(DEV_PY) -m testkit.cluster status
