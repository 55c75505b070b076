#!/usr/bin/env bash
# Full check used by CI (.ci/run): set-up, mypy --strict, ruff, then the whole pytest suite
# (tests/). Extra arguments are passed to pytest, e.g.
# `bash scripts/test.sh -k lab -x` or `bash scripts/test.sh tests/ovs`.
# pytest exit 5 ("no tests collected") counts as a failure.
set -euo pipefail

die() {
    echo "test.sh: ERROR: $*" >&2
    exit 1
}

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" \
    || die "cannot locate the repository root"
cd "$REPO_ROOT"

bash scripts/setup.sh || die "set-up failed"

echo "test.sh: mypy --strict (controller, apps)"
.venv/bin/mypy || die "mypy reported errors"

echo "test.sh: ruff check and ruff format --check"
.venv/bin/ruff check . || die "ruff check reported problems (ruff check --fix . fixes most)"
.venv/bin/ruff format --check . || die "files not formatted (run: .venv/bin/ruff format .)"

# No path given: pytest uses testpaths = tests (setup.cfg), i.e. the whole
# suite; a path among the extra arguments narrows the run.
echo "test.sh: pytest $*"
set +e
.venv/bin/pytest -q -p no:cacheprovider --durations=30 "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
    die "pytest collected no tests (exit 5)"
fi
exit "$status"
