#!/usr/bin/env bash
# Start PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) for the tests if they are not
# already listening; install them from Debian's packages first if they are missing.
set -euo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! listening 5432; then
  if ! command -v pg_ctlcluster >/dev/null; then
    as_root apt-get update -qq && as_root apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 50); do listening 5432 && break; sleep 0.2; done
  listening 5432 || { echo "PostgreSQL did not start" >&2; exit 1; }
fi

if ! listening 6379; then
  if ! command -v redis-server >/dev/null; then
    as_root apt-get update -qq && as_root apt-get install -y -qq redis-server >/dev/null
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 50); do listening 6379 && break; sleep 0.2; done
  listening 6379 || { echo "Redis did not start" >&2; exit 1; }
fi
echo "services: PostgreSQL on 5432 and Redis on 6379 are up"
