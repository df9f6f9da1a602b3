#!/usr/bin/env bash
# Build the documentation site and open every page in headless Chromium (scripts/check_site.py):
# console errors, images, internal links, search. Needs Debian's chromium and chromium-driver.
source "$(dirname "$0")/_venv.sh" docs
python -m pip install -q "selenium>=4.10" >>"${RNN_JAX_VENV:-.venv}/pip.log" 2>&1
export NO_MKDOCS_2_WARNING=1
python -m mkdocs build --strict -q
python scripts/check_site.py --site site
