#!/usr/bin/env bash
# Installs the real peers the end-to-end tests run against, into .peers/
# (Python and Node packages) and the system (Debian packages). Idempotent:
# a second run with everything present does no network work.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
peers="${SOCKPULSE_PEERS_DIR:-$root/.peers}"
mkdir -p "$peers"

need_apt=()
command -v nginx >/dev/null 2>&1 || need_apt+=(nginx-light)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v prometheus-node-exporter >/dev/null 2>&1 || need_apt+=(prometheus-node-exporter)
command -v ss >/dev/null 2>&1 || need_apt+=(iproute2)
# MQTT and STOMP over WebSocket (the web_mqtt and web_stomp plugins ship in
# it); mosquitto for MQTT 5, mosquitto_pub to publish.
command -v rabbitmq-server >/dev/null 2>&1 || need_apt+=(rabbitmq-server)
command -v mosquitto >/dev/null 2>&1 || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
# Proxies: HTTP CONNECT and SOCKS5.
command -v tinyproxy >/dev/null 2>&1 || need_apt+=(tinyproxy)
command -v microsocks >/dev/null 2>&1 || need_apt+=(microsocks)
# A WebSocket load balancer whose idle timeout the tests measure.
command -v haproxy >/dev/null 2>&1 || need_apt+=(haproxy)
# SRV records (the binary only: no service that touches resolv.conf).
command -v dnsmasq >/dev/null 2>&1 || need_apt+=(dnsmasq-base)
# The live page's browser tests: Debian's Chromium, driven by playwright-core.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# htpasswd: bcrypt hashes for the web configuration's basic_auth_users.
command -v htpasswd >/dev/null 2>&1 || need_apt+=(apache2-utils)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "install-peers: need root to apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
  echo "install-peers: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's packages start their daemons; the tests start their own. A
  # policy-rc.d that says "no" keeps them from starting (with or without
  # systemd); the loop below stops any that started anyway.
  policy=/usr/sbin/policy-rc.d
  own_policy=false
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    own_policy=true
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  if $own_policy; then
    rm -f "$policy"
    trap - EXIT
  fi
  for svc in nginx prometheus prometheus-node-exporter redis-server rabbitmq-server mosquitto tinyproxy haproxy; do
    if command -v systemctl >/dev/null 2>&1 && systemctl stop "$svc" >/dev/null 2>&1; then continue; fi
    service "$svc" stop >/dev/null 2>&1 || true
  done
fi

venv="$peers/venv"
# Application-protocol servers: python-socketio on aiohttp, strawberry-graphql
# under uvicorn; aiomqtt and the python-socketio client for the benchmark.
if ! "$venv/bin/python" -c 'import websockets, cryptography, yaml, socketio, aiohttp, strawberry.asgi, uvicorn, aiomqtt' >/dev/null 2>&1; then
  echo "install-peers: pip install websockets cryptography pyyaml python-socketio aiohttp strawberry-graphql starlette uvicorn aiomqtt into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'websockets>=13' cryptography pyyaml \
    'python-socketio>=5.11' aiohttp 'strawberry-graphql>=0.330' starlette uvicorn 'aiomqtt>=2'
fi

node_dir="$peers/node"
# ws; socket.io 4 (Engine.IO 4) and 2 (Engine.IO 3, installed as socket.io-v2);
# graphql-ws with graphql; playwright-core (no browser download: it drives
# the system's Chromium).
node_packages=(ws@8 socket.io@4 socket.io-v2@npm:socket.io@2 graphql-ws@6 graphql@16 playwright-core@1)
if ! [ -f "$node_dir/node_modules/ws/package.json" ] || ! [ -f "$node_dir/node_modules/socket.io-v2/package.json" ] \
  || ! [ -f "$node_dir/node_modules/graphql-ws/package.json" ] \
  || ! [ -f "$node_dir/node_modules/playwright-core/package.json" ]; then
  echo "install-peers: npm install ${node_packages[*]} into $node_dir"
  mkdir -p "$node_dir"
  npm install --prefix "$node_dir" --no-audit --no-fund --silent "${node_packages[@]}" >/dev/null
fi

# websocat: the WebSocket listener in front of mosquitto (Debian's mosquitto
# has none that starts here).
if ! command -v websocat >/dev/null 2>&1 && ! [ -x "$HOME/.cargo/bin/websocat" ]; then
  echo "install-peers: cargo install websocat (about 2 minutes)"
  cargo install -q websocat --locked
fi

# Autobahn TestSuite needs Python 2.7; machines of this kind carry one through
# pyenv. Installed with pip --user under .peers/autobahn (PYTHONUSERBASE).
autobahn="$peers/autobahn"
if ! [ -x "$autobahn/bin/wstest" ]; then
  py27=""
  if command -v pyenv >/dev/null 2>&1; then
    v=$(pyenv versions --bare 2>/dev/null | grep -E '^2\.7(\.|$)' | tail -1 || true)
    [ -n "$v" ] && py27="$(pyenv root)/versions/$v/bin/python2.7"
  fi
  [ -z "$py27" ] && py27=$(command -v python2.7 || true)
  if [ -n "$py27" ] && [ -x "$py27" ]; then
    echo "install-peers: pip install autobahntestsuite into $autobahn ($py27)"
    PYTHONUSERBASE="$autobahn" "$py27" -m pip install -q --user --disable-pip-version-check \
      --no-warn-script-location autobahntestsuite==0.8.2
  else
    echo "install-peers: no Python 2.7 here: the Autobahn conformance test will skip (fail under CI=true)" >&2
  fi
fi

node_version() { node -p "require('$node_dir/node_modules/$1/package.json').version"; }
echo "install-peers: python websockets $("$venv/bin/python" -c 'import websockets; print(websockets.__version__)'), python-socketio $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("python-socketio"))'), node ws $(node_version ws), socket.io $(node_version socket.io) and $(node_version socket.io-v2), graphql-ws $(node_version graphql-ws), $(nginx -v 2>&1), $(promtool --version 2>&1 | head -1), $(redis-server --version | cut -d' ' -f1-3)"
