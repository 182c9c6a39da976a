#!/bin/sh
# The guardian of one embedded tritonserver (lineqa.serving.embedded_triton starts it; never edit it per site).
#
#   triton_guardian.sh PIDFILE SHM_PREFIX GRACE_S tritonserver [ARGS...]
#
# Triton runs in a process group of its own, with every Python-backend stub it starts. Triton's stubs do not
# always notice a killed server (seen: stubs sleeping for hours, their shared memory left in /dev/shm), so this
# guardian makes the whole group die with the server, and with the gateway: the gateway starts it with a
# parent-death signal (SIGTERM), so a gateway killed with SIGKILL still takes its Triton with it.
#   - on SIGTERM/SIGINT: Triton is asked to stop (it finishes in-flight requests), killed after GRACE_S;
#   - when Triton exits, for any reason: what is left of its group is killed, its shared memory removed;
# and the guardian exits with Triton's status. Triton's pid is written to PIDFILE.
pidfile=$1
shm_prefix=$2
grace=$3
shift 3

setsid "$@" &
server=$!
echo "$server" > "$pidfile"

finish() {
  kill -KILL -- "-$server" 2>/dev/null
  rm -f /dev/shm/"$shm_prefix"* 2>/dev/null
  exit "$1"
}

stop() {
  kill -TERM "$server" 2>/dev/null
  ( sleep "$grace"; kill -KILL -- "-$server" 2>/dev/null ) &
  timer=$!
  wait "$server"
  kill "$timer" 2>/dev/null
  finish 143
}

trap stop TERM INT
wait "$server"
finish $?
