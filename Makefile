# Two commands on a fresh machine: `make run` and `make test` (README).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   ?= var
BIND   ?= 127.0.0.1:8080
SMSC_PORT ?= 2775

.PHONY: install run test bench bench-ota bench-download bench-handover bench-http bench-compare clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	# lxml and xmlsec must come as wheels built on the same libxml2 (python-stack.md s2)
	$(PY) -m pip install -q --only-binary lxml,xmlsec,cryptography -e '.[test]'
	$(PY) -c "import lxml.etree as e, xmlsec; assert e.LIBXML_VERSION[:2] == xmlsec.get_libxml_version()[:2], 'lxml/xmlsec libxml2 mismatch'"
	touch $(STAMP)

install: $(STAMP)

run: install
	@test -f $(DATA)/esx.json || $(VENV)/bin/esx init --data-dir $(DATA) --demo 3 --public-url http://$(BIND) --smsc-port $(SMSC_PORT)
	@echo "esx is in $(VENV)/bin: '. $(VENV)/bin/activate' puts it on your PATH (README, Quick start)"
	$(VENV)/bin/esx serve --data-dir $(DATA) --bind $(BIND)

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/es4_get_eis.py

bench-ota: install
	$(PY) bench/ota_ops.py --matrix

bench-download: install
	$(PY) bench/downloads.py --euiccs 30

bench-handover: install
	$(PY) bench/handovers.py --euiccs 200

bench-http: install
	$(PY) bench/http_client.py

# Old and new side by side, one after the other on the same machine state: OLD is a checkout of an earlier
# commit with its own .venv, e.g. `git worktree add --detach ../esx-old 87829b0 && make -C ../esx-old install`.
bench-compare: install
	@test -n "$(OLD)" || (echo "usage: make bench-compare OLD=../esx-old" && exit 2)
	$(PY) bench/downloads.py --euiccs 30 --compare $(OLD)
	$(PY) bench/ota_ops.py --euiccs 20 --rounds 3 --esx-root $(OLD)
	$(PY) bench/ota_ops.py --euiccs 20 --rounds 3

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache
