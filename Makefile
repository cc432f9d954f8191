# Two commands do all the set-up on a fresh machine (Debian, Python 3.11):
#   make demo   create .venv, install everything, generate + replay the sample bag (offline and
#               through a live node), write the reports
#   make test   create .venv, install everything, run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test demo bench docs clean

setup: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# pytest exit 5 (nothing collected) is a failure with its own message: a suite that silently
# collects nothing must not pass.
test: $(STAMP)
	$(BIN)/python -m pytest -q test; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The offline pass scores every frame and every method through the node's code path; the live
# pass plays the bag at half its rate into a real upsample_node process over rclpy/DDS.
demo: $(STAMP)
	test -d demo_out/sample_bag || $(BIN)/dada-replay --make-sample demo_out/sample_bag
	rm -rf demo_out/report demo_out/live
	$(BIN)/dada-replay --bag demo_out/sample_bag --out demo_out/report --cold-every 16 \
	    --methods dada-free,dada-free:flow,dada-free:naive,dada-free:cold:100,bicubic,jbf \
	    --node-params points_decimation:=2
	$(BIN)/dada-replay --bag demo_out/sample_bag --out demo_out/live --realtime --rate 0.5

bench: $(STAMP)
	$(BIN)/python benchmarks/quality.py

# The documentation (doc/: Sphinx + MyST Markdown, as rosdoc2 builds ROS 2 packages) into build/doc;
# -W: any warning (a broken link or anchor, a page missing from the toctree) fails the build.
docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -b html doc build/doc

clean:
	rm -rf $(VENV) build *.egg-info
