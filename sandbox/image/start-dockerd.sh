#!/bin/sh
# Start Debian's dockerd when it is not running (make demo / test / bench, .ci/run).
#
# Only as root on Linux with docker.io installed; otherwise say so and leave: the hub
# then falls back to bubblewrap. On first use it writes /etc/docker/daemon.json (only
# when there is none): a fixed small address pool for the sandboxes' internal networks
# and no default bridge, so no container is ever on a network with a route out.
set -eu

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if [ "$(id -u)" != 0 ] || [ "$(uname -s)" != Linux ]; then
  echo "[dockerd] not root on Linux: no Docker engine; sandboxes use bubblewrap"
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "[dockerd] dockerd is not installed (apt-get install docker.io): sandboxes use bubblewrap"
  exit 0
fi
if answers; then
  exit 0
fi
if [ ! -e /etc/docker/daemon.json ]; then
  mkdir -p /etc/docker
  cat > /etc/docker/daemon.json <<'JSON'
{
  "bridge": "none",
  "default-address-pools": [{"base": "172.31.240.0/20", "size": 24}],
  "storage-driver": "overlay2",
  "log-level": "warn"
}
JSON
fi
echo "[dockerd] starting dockerd (log: /var/log/dockerd.log)"
setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
i=0
while ! answers; do
  i=$((i + 1))
  if [ "$i" -ge 60 ]; then
    echo "[dockerd] dockerd did not answer within 60 s; see /var/log/dockerd.log" >&2
    tail -5 /var/log/dockerd.log >&2 || true
    exit 1
  fi
  sleep 1
done
echo "[dockerd] dockerd answers"
