#!/usr/bin/env bash
# Starts (installing when absent) the local PostgreSQL and Redis the tests talk to, and
# installs the tools some tests run: promtool and prometheus (Debian's prometheus package),
# Alertmanager (prometheus-alertmanager) and kubectl.
set -euo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
apt_ready=0
apt_install() {
  if [ "$apt_ready" = 0 ]; then apt-get update -qq; apt_ready=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# promtool checks and unit-tests deploy/prometheus/codeblue-rules.yaml (tests/deploy/test_codeblue_rules.py);
# the prometheus server scrapes the sandbox gateway for the SLI tests (tests/activities/test_prometheus_slis.py).
# The package would start a Prometheus daemon: policy-rc.d keeps its init script from running.
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  if [ -e /usr/sbin/policy-rc.d ]; then
    apt_install --no-install-recommends prometheus
  else
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt_install --no-install-recommends prometheus || { rm -f /usr/sbin/policy-rc.d; exit 1; }
    rm -f /usr/sbin/policy-rc.d
  fi
fi

# A real Alertmanager sends its own webhooks to the API (tests/starters/api/test_alertmanager_delivery.py);
# its package would start a daemon too, kept from running the same way.
if ! command -v prometheus-alertmanager >/dev/null && ! command -v alertmanager >/dev/null; then
  if [ -e /usr/sbin/policy-rc.d ]; then
    apt_install --no-install-recommends prometheus-alertmanager
  else
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt_install --no-install-recommends prometheus-alertmanager || { rm -f /usr/sbin/policy-rc.d; exit 1; }
    rm -f /usr/sbin/policy-rc.d
  fi
fi

# kubectl against the sandbox API (tests/sandbox/test_kubectl_sandbox.py). Debian bookworm ships it as
# kubernetes-client (1.20); without any package for it that test skips, saying so.
if ! command -v kubectl >/dev/null; then
  apt_install kubernetes-client || echo "ensure-services: no kubectl package found; tests/sandbox/test_kubectl_sandbox.py will skip" >&2
fi

if ! listening 6379; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi

if ! listening 5432; then
  if ! ls /etc/postgresql 2>/dev/null | grep -q .; then
    apt_install postgresql
    ver="$(ls /etc/postgresql | sort -V | tail -1)"
    # tests connect as postgres over TCP without a password, as on the dev machines
    printf 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' \
      > "/etc/postgresql/$ver/main/pg_hba.conf"
  fi
  ver="$(ls /etc/postgresql | sort -V | tail -1)"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
fi

for i in $(seq 1 50); do
  if listening 5432 && listening 6379; then exit 0; fi
  sleep 0.2
done
echo "ensure-services: PostgreSQL (5432) or Redis (6379) did not come up" >&2
exit 1
