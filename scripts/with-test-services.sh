#!/usr/bin/env bash
# Runs a command (the test suite) with the test services up: a local PostgreSQL cluster when
# Debian's postgresql is installed and we are root. Sets GPT4LLM_TEST_PG_URL for the tests that
# use it; without it those tests skip.
set -u
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
