#!/bin/sh
# A vigil sidecar in shell: print when this node becomes, or stops being, the
# valid primary. Needs `vigil` and `jq`. Usage: sidecar.sh [--socket PATH | --node NAME]
# Ends (exit 1) when the daemon goes away.
vigil watch --json "$@" |
  jq --unbuffered -r '"\(.holds and .is_primary) \(.token)"' |
  while read -r primary token; do
    if [ "$primary" = true ]; then
      echo "primary with token $token: start the service"
    else
      echo "not the valid primary (token $token): stop the service"
    fi
  done
exit 1
