#!/usr/bin/env bash
# A private RabbitMQ node for sockpulse's tests, in the foreground: MQTT over
# WebSocket and STOMP over WebSocket (the web_mqtt and web_stomp plugins that
# ship with Debian's rabbitmq-server) on the given loopback ports, path /ws.
# Everything lives under DIR; nothing of the system's node is touched.
# The default user guest/guest may connect from loopback.
#
# usage: rabbitmq.sh DIR NODENAME AMQP_PORT DIST_PORT MQTT_WS_PORT STOMP_WS_PORT MQTT_TCP_PORT
# stop:  rabbitmqctl -n NODENAME stop
set -euo pipefail
dir=$1 node=$2 amqp=$3 dist=$4 mqtt=$5 stomp=$6 mqtt_tcp=$7
mkdir -p "$dir/mnesia" "$dir/log"
cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$amqp
web_mqtt.tcp.ip = 127.0.0.1
web_mqtt.tcp.port = $mqtt
web_stomp.tcp.ip = 127.0.0.1
web_stomp.tcp.port = $stomp
loopback_users.guest = true
mqtt.listeners.tcp.1 = 127.0.0.1:$mqtt_tcp
stomp.listeners.tcp = none
CONF
echo '[rabbitmq_web_mqtt,rabbitmq_web_stomp].' >"$dir/enabled_plugins"
# The node runs as the rabbitmq user.
chown -R rabbitmq:rabbitmq "$dir"
export RABBITMQ_NODENAME=$node RABBITMQ_NODE_PORT=$amqp RABBITMQ_DIST_PORT=$dist \
  RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
  RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
  RABBITMQ_FEATURE_FLAGS_FILE="$dir/feature_flags" RABBITMQ_PLUGINS_EXPAND_DIR="$dir/plugins-expand" \
  RABBITMQ_LOGS=- RABBITMQ_SASL_LOGS=-
# Not through /usr/sbin/rabbitmq-server: its `su` resets the fd limit to
# 1024 (pam_limits), and RabbitMQ accepts sockets up to ~80 % of its limit,
# then stops answering (the benchmark holds 1000 sessions).
ulimit -n "$(ulimit -Hn)"
export HOME=/var/lib/rabbitmq
exec setpriv --reuid rabbitmq --regid rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server
