#!/bin/bash
# The recipe's RAM nodes: start detached, "do the cluster dance", stop, and
# start again in the foreground. Racy by design: when node0 is not up yet the
# join fails, the container exits and Docker restarts it (restart: on-failure).
# JOIN_FLAGS is --ram unless set: 4.3 has no RAM nodes, so its recipe joins
# as disc nodes (JOIN_FLAGS=--disc).
set -e
install -o rabbitmq -g rabbitmq -m 0400 /baseline/erlang.cookie /var/lib/rabbitmq/.erlang.cookie
docker-entrypoint.sh rabbitmq-server -detached
sleep 5
rabbitmqctl stop_app
rabbitmqctl join_cluster "${JOIN_FLAGS:---ram}" rabbit@rmqha_node0
rabbitmqctl stop
sleep 2s
exec docker-entrypoint.sh rabbitmq-server
