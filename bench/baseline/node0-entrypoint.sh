#!/bin/bash
# The recipe's disc node: the shared cookie, then RabbitMQ in the foreground.
set -e
install -o rabbitmq -g rabbitmq -m 0400 /baseline/erlang.cookie /var/lib/rabbitmq/.erlang.cookie
exec docker-entrypoint.sh rabbitmq-server
