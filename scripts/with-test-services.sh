#!/usr/bin/env bash
# Runs a command (the test suite) with the test services up: a local PostgreSQL cluster when
# Debian's postgresql is installed and we are root. Sets GPT4LLM_TEST_PG_URL for the tests that
# use it; without it those tests skip.
# The vLLM CPU venv (.venv-vllm, for tests/llm/test_vllm_server_e2e.py) is built when missing
# (scripts/vllm-venv.sh; a no-op when built). A failed build is one line here and is passed to
# the tests in GPT4LLM_VLLM_VENV_ERROR: they fail with it under CI=true, else skip with it.
set -u
vllm_log=$(mktemp)
bash "$(dirname "$0")/vllm-venv.sh" 2>&1 | tee "$vllm_log" >&2
if [ "${PIPESTATUS[0]}" != 0 ]; then
  vllm_error=$(grep '^error:' "$vllm_log" | tail -n 1)
  export GPT4LLM_VLLM_VENV_ERROR="${vllm_error:-error: scripts/vllm-venv.sh failed}"
  echo "the vLLM tests fail in CI, skip elsewhere" >&2
fi
rm -f "$vllm_log"
started=""
if [ -z "${GPT4LLM_TEST_PG_URL:-}" ] && command -v pg_lsclusters >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  read -r ver name port status _ < <(pg_lsclusters -h | head -n 1) || true
  if [ -n "${ver:-}" ]; then
    if [ "$status" != online ]; then
      pg_ctlcluster "$ver" "$name" start >/dev/null 2>&1 && started="$ver $name"
    fi
    su postgres -c "psql -q -p $port -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null 2>&1 \
      && export GPT4LLM_TEST_PG_URL="postgresql+psycopg://postgres:postgres@127.0.0.1:${port}/postgres"
  fi
fi
"$@"
rc=$?
[ -n "$started" ] && pg_ctlcluster $started stop >/dev/null 2>&1
exit $rc
