# Two entry points, each creating the environment it needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean system-packages airflow-envs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,bigquery,test]'
	touch $(STAMP)

# Airflow, the two lines Cloud Composer offers, each in an environment of its own (Airflow pins
# many packages: never in .venv, which JupyterLab uses). Installed from the constraints files
# committed in constraints/ (a freeze of each; constraints/README.md). The 3.x one also has the
# Google provider, with only what its Cloud Run operator imports (its full set is gigabytes),
# and what the coverage report needs (the scheduled audit's test).
AIRFLOW_2 := 2.10.5
AIRFLOW_3 := 3.3.2
CLOUD_RUN_DEPS := google-cloud-run google-cloud-logging google-cloud-secret-manager google-api-python-client \
	google-auth-httplib2 gcloud-aio-auth tenacity asgiref requests
REPORT_DEPS := papermill nbconvert ipykernel pandas plotly

.venv-airflow-2/.installed: pyproject.toml constraints/airflow-$(AIRFLOW_2)-py3.11.txt
	test -x .venv-airflow-2/bin/python || $(PYTHON) -m venv .venv-airflow-2
	.venv-airflow-2/bin/python -m pip install --quiet --upgrade pip
	.venv-airflow-2/bin/python -m pip install --quiet -c constraints/airflow-$(AIRFLOW_2)-py3.11.txt -e '.[airflow]' pytest
	touch $@

.venv-airflow-3/.installed: pyproject.toml constraints/airflow-$(AIRFLOW_3)-py3.11.txt
	test -x .venv-airflow-3/bin/python || $(PYTHON) -m venv .venv-airflow-3
	.venv-airflow-3/bin/python -m pip install --quiet --upgrade pip
	.venv-airflow-3/bin/python -m pip install --quiet -c constraints/airflow-$(AIRFLOW_3)-py3.11.txt -e '.[airflow]' pytest $(CLOUD_RUN_DEPS) $(REPORT_DEPS)
	.venv-airflow-3/bin/python -m pip install --quiet --no-deps -c constraints/airflow-$(AIRFLOW_3)-py3.11.txt apache-airflow-providers-google
	touch $@

airflow-envs: .venv-airflow-2/.installed .venv-airflow-3/.installed

DEMO_RANGE := --start 2021-10-19 --end 2025-06-22

# Build the demo warehouse, show its gaps, plan and run the backfill, show the result.
demo: $(STAMP)
	$(BIN)/backfill-kit demo init demo
	@echo; echo "== Before: every table and game date of four seasons, and why each gap exists"
	$(BIN)/backfill-kit validate --spec demo/nba_props.yaml $(DEMO_RANGE) || test $$? -eq 1
	@echo; echo "== Coverage report before the backfill (papermill, HTML)"
	$(BIN)/backfill-kit report coverage --spec demo/nba_props.yaml $(DEMO_RANGE) > demo/report-1-before.txt
	@cat demo/report-1-before.txt
	@echo; echo "== The plan, stage by stage"
	rm -rf demo/runs
	$(BIN)/backfill-kit plan --spec demo/nba_props.yaml $(DEMO_RANGE) --out demo/runs/plan.json
	@echo; echo "== The backfill"
	$(BIN)/backfill-kit run --plan demo/runs/plan.json
	@echo; echo "== After"
	$(BIN)/backfill-kit validate --spec demo/nba_props.yaml $(DEMO_RANGE)
	@echo; echo "== Coverage report after the backfill, and the execution log"
	$(BIN)/backfill-kit report coverage --spec demo/nba_props.yaml $(DEMO_RANGE) > demo/report-2-after.txt
	$(BIN)/backfill-kit report execution --journal demo/runs/plan.journal.jsonl > demo/report-3-execution.txt
	@echo; echo "== Reports: self-contained HTML files, readable offline (every report: reports/index.html)"
	@grep -h '^report:' demo/report-1-before.txt demo/report-2-after.txt demo/report-3-execution.txt

# Debian packages some tests drive for real (a terminal for the live monitor, a browser for
# the HTML reports); installed when missing and when we may (CI runs as root), else those
# tests say they were skipped.
SYSTEM_PACKAGES := tmux chromium

system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing:$$missing (not root, not installed): the tests needing them will be skipped"; fi; \
	fi

# Every test (the layer order among them), with lint, format and strict types checked
# alongside: their report follows the tests', and make test fails if any of them fails.
test: $(STAMP) system-packages airflow-envs
	@log=$$(mktemp); \
	( status=0; for check in "$(BIN)/ruff check backfill_kit tests bench" \
	    "$(BIN)/ruff format --check backfill_kit tests bench" "$(BIN)/mypy"; do \
	    echo "$$ $$check"; $$check || status=1; done; exit $$status ) >$$log 2>&1 & checks=$$!; \
	echo "$(BIN)/python -m pytest"; $(BIN)/python -m pytest; tests=$$?; \
	wait $$checks; checked=$$?; echo; cat $$log; rm -f $$log; \
	test $$tests -eq 0 && test $$checked -eq 0

bench: $(STAMP)
	$(BIN)/python bench/commands.py
	$(BIN)/python bench/run.py
	$(BIN)/python bench/runner.py
	$(BIN)/python bench/reports.py
	$(BIN)/python bench/eta.py

clean:
	rm -rf $(VENV) .venv-airflow-2 .venv-airflow-3 demo
