#!/usr/bin/env bash
# `make test-compose`: compose.yaml on a real Docker engine. Builds the images, starts
# the stack and waits until every service is healthy, sends held-out digits through the
# gateway over REST and gRPC (tests/compose_client.py), scales the workers to three and
# checks that all three serve, then takes the stack down. It never touches your .env:
# it runs with passwords of its own, in a project of its own (tandem-test).
#
#   COMPOSE_PROFILES   the profiles to start besides the core (NATS, workers, gateway);
#                      default "load" (Locust). With internet access:
#                      COMPOSE_PROFILES=observability,load make test-compose
#   TANDEM_NATS_STANDIN=1  where nats:<pinned>-alpine cannot be pulled (an offline
#                      engine), build a stand-in of that tag: the nats-server module
#                      pinned in edge-go/go.mod on debian:bookworm-slim with busybox's
#                      wget for the healthcheck. compose.yaml itself names the official
#                      image.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
export COMPOSE_PROJECT_NAME=tandem-test
export COMPOSE_PROFILES=${COMPOSE_PROFILES-load}
# What the engine builds with: BuildKit where there is one, else the classic builder;
# the Dockerfiles need neither's extras.
scratch=$(mktemp -d)
env_file=$scratch/env
trap 'docker compose --env-file "$env_file" --profile observability --profile load down --remove-orphans --volumes >/dev/null 2>&1 || true; rm -rf "$scratch"' EXIT
umask 077
"$PY" -c 'import secrets; [print(f"{k}_PASSWORD={secrets.token_hex(24)}") for k in ("NATS_GATEWAY", "NATS_WORKER", "NATS_OBSERVER", "GRAFANA_ADMIN")]' > "$env_file"
echo "COMPOSE_PROFILES=$COMPOSE_PROFILES" >> "$env_file"
[ "${COMPOSE_PROFILES/observability/}" = "$COMPOSE_PROFILES" ] && echo "OTEL_TRACES_EXPORTER=none" >> "$env_file"
dc() { docker compose --env-file "$env_file" "$@"; }
step() { printf '\n==> %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

docker version --format 'engine {{.Server.Version}}'
docker compose version

nats_image=$(sed -n 's/^ *image: \(nats:.*\)$/\1/p' compose.yaml)
if [ "${TANDEM_NATS_STANDIN:-0}" = 1 ] && ! docker image inspect "$nats_image" >/dev/null 2>&1; then
  step "stand-in for $nats_image (the pinned nats-server module, TANDEM_NATS_STANDIN=1)"
  (cd edge-go && CGO_ENABLED=0 go build -trimpath -o "$scratch/nats/nats-server" github.com/nats-io/nats-server/v2)
  # umask 077 above made it owner-only: the image runs it as a non-root user.
  chmod 0755 "$scratch/nats/nats-server"
  printf '%s\n' 'FROM debian:bookworm-slim' \
    'RUN apt-get update -q && apt-get install -y -q --no-install-recommends busybox && rm -rf /var/lib/apt/lists/* && ln -s /bin/busybox /usr/local/bin/wget' \
    'COPY nats-server /usr/local/bin/nats-server' 'EXPOSE 4222 6222 8222' 'ENTRYPOINT ["nats-server"]' > "$scratch/nats/Dockerfile"
  docker build -q -t "$nats_image" "$scratch/nats"
  "$scratch/nats/nats-server" --version
fi

step "docker compose config (profiles: core${COMPOSE_PROFILES:+,$COMPOSE_PROFILES})"
dc config --services | tr '\n' ' '; echo

step "build"
dc build
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^tandem-' | sort

step "up, waiting for every service to be healthy"
t0=$(date +%s)
dc up -d --wait --wait-timeout 300
echo "healthy after $(( $(date +%s) - t0 ))s"
dc ps --format '{{.Service}} {{.Name}} {{.Status}}'

step "requests through the gateway: REST and gRPC, two workers"
"$PY" tests/compose_client.py --env-file "$env_file" --workers 2

step "memory of each container (docker stats), this profile"
docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' $(dc ps -q) | sort | tee "$scratch/stats"
"$PY" -c '
import re, sys
units = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
total = 0.0
for line in open(sys.argv[1]):
    m = re.search(r" ([0-9.]+)([KMG]?i?B) /", line)
    total += float(m.group(1)) * units[m.group(2)]
print(f"total {total / 2**20:.0f} MiB")' "$scratch/stats"

step "--scale inference=3"
dc up -d --wait --wait-timeout 300 --scale inference=3
dc ps --format '{{.Service}} {{.Name}} {{.Status}}' inference
"$PY" tests/compose_client.py --env-file "$env_file" --workers 3

step "down"
dc --profile observability --profile load down --remove-orphans --volumes
echo "test-compose: passed"
