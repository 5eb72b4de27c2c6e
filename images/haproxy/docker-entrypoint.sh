#!/bin/sh
# The official image's entrypoint contract: flags alone mean haproxy's flags,
# and haproxy runs in the foreground under its master process (-W -db).
set -e
if [ "${1#-}" != "$1" ]; then
	set -- haproxy "$@"
fi
if [ "$1" = 'haproxy' ]; then
	shift
	set -- haproxy -W -db "$@"
fi
exec "$@"
