#!/usr/bin/env bash
# The documentation site (MkDocs + Material + mkdocstrings, from docs/ and the docstrings):
#   bash scripts/docs.sh          build it strictly and serve it at http://127.0.0.1:8000
#   bash scripts/docs.sh build    build it into site/ (strict: a broken reference or missing page fails)
source "$(dirname "$0")/_venv.sh" docs
export NO_MKDOCS_2_WARNING=1
if [ "${1:-serve}" = build ]; then
    python -m mkdocs build --strict
else
    python -m mkdocs serve --strict
fi
