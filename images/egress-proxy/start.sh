#!/bin/sh
# Write tinyproxy's configuration into the writable /tmp from what the host passes, then
# become tinyproxy in the foreground (its log on stdout, which the host reads).
#   SKILLHOST_EGRESS_FILTER  one extended regular expression per line, each matching the
#                            requests (CONNECT host:port, or http://host:port/...) of one
#                            allowed destination; anything else is refused.
#   SKILLHOST_EGRESS_ALLOW   the allowlist network's subnet: the only clients served.
set -eu
: "${SKILLHOST_EGRESS_FILTER:?the host passes the allowlist}"
: "${SKILLHOST_EGRESS_ALLOW:?the host passes the clients' subnet}"
printf '%s\n' "$SKILLHOST_EGRESS_FILTER" >/tmp/filter
cat >/tmp/tinyproxy.conf <<CONF
Port 8888
Timeout 120
MaxClients 256
LogLevel Info
PidFile "/tmp/tinyproxy.pid"
Allow $SKILLHOST_EGRESS_ALLOW
DisableViaHeader Yes
Filter "/tmp/filter"
FilterType ere
FilterURLs On
FilterDefaultDeny Yes
CONF
exec tinyproxy -d -c /tmp/tinyproxy.conf
