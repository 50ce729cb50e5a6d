#!/usr/bin/env bash
# Starts (when not already running) and waits for every service the test suites talk to:
# PostgreSQL, MariaDB, Redis (standalone on 6379, a three-master cluster on 7001-7003),
# Memcached on 11211, and installs Chromium + ChromeDriver for the browser test.
# Exits non-zero, naming the service, when one cannot be brought up.
set -euo pipefail

fail() { echo "ci: required service unavailable: $*" >&2; exit 1; }

wait_for() { # name, command...
    local name=$1; shift
    for _ in $(seq 1 60); do
        if "$@" >/dev/null 2>&1; then echo "ci: $name is up"; return 0; fi
        sleep 0.5
    done
    fail "$name"
}

need_packages=()
command -v memcached >/dev/null || need_packages+=(memcached)
command -v chromium >/dev/null || need_packages+=(chromium)
command -v chromedriver >/dev/null || need_packages+=(chromium-driver)
if [ ${#need_packages[@]} -gt 0 ]; then
    echo "ci: installing ${need_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

# PostgreSQL
if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
fi
wait_for "PostgreSQL (127.0.0.1:5432)" pg_isready -h 127.0.0.1 -p 5432

# MariaDB
if ! mysqladmin -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; then
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
wait_for "MariaDB (127.0.0.1:3306)" mysqladmin -h 127.0.0.1 -P 3306 -u root ping

# Redis, standalone
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no
fi
wait_for "Redis (127.0.0.1:6379)" redis-cli -h 127.0.0.1 -p 6379 ping

# Redis Cluster: three masters on 7001-7003, no replicas.
cluster_dir=${TMPDIR:-/tmp}/tessera-redis-cluster
for port in 7001 7002 7003; do
    if ! redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then
        mkdir -p "$cluster_dir/$port"
        rm -f "$cluster_dir/$port/nodes.conf"
        redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
            --cluster-config-file "$cluster_dir/$port/nodes.conf" --dir "$cluster_dir/$port" \
            --save "" --appendonly no --logfile "$cluster_dir/$port/redis.log"
    fi
    wait_for "Redis Cluster node (127.0.0.1:$port)" redis-cli -h 127.0.0.1 -p "$port" ping
done
if ! redis-cli -p 7001 cluster info 2>/dev/null | grep -q "cluster_state:ok"; then
    redis-cli --cluster create 127.0.0.1:7001 127.0.0.1:7002 127.0.0.1:7003 \
        --cluster-replicas 0 --cluster-yes >/dev/null
fi
wait_for "Redis Cluster (cluster_state:ok)" bash -c 'redis-cli -p 7001 cluster info | grep -q cluster_state:ok'

# Memcached
if ! (exec 3<>/dev/tcp/127.0.0.1/11211) 2>/dev/null; then
    memcached -d -u root -l 127.0.0.1 -p 11211 -m 256
fi
wait_for "Memcached (127.0.0.1:11211)" bash -c 'exec 3<>/dev/tcp/127.0.0.1/11211'

command -v chromium >/dev/null || fail "chromium"
command -v chromedriver >/dev/null || fail "chromedriver"
