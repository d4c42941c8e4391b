#!/usr/bin/env bash
# A real IPP printer for tests: CUPS's ippeveprinter, which accepts jobs like
# an MFD and keeps every document it receives (-k), so tests compare bytes.
#
#   ipp-printer.sh start PORT DIR [NAME]   start on 127.0.0.1:PORT keeping
#                                          documents in DIR; prints its URI
#                                          (with IPP_PRINTER_KEYS=KEYDIR it also
#                                          speaks ipps with KEYDIR/localhost.crt
#                                          and .key)
#   ipp-printer.sh stop DIR                stop the one keeping files in DIR
#   ipp-printer.sh mdns                    only make sure the DNS-SD daemon runs
#
# ippeveprinter refuses to start without a DNS-SD daemon, so this gives it
# one that cannot reach any network: avahi-daemon inside a network namespace
# ("appliance-mdns") that has only a loopback interface, reached over the
# system D-Bus socket. It also publishes the host's address there, so
# services the appliance advertises resolve for ippfind and avahi-browse.
# Needs root (as in CI). Installs cups-ipp-utils, avahi-daemon,
# avahi-utils, dbus and iproute2 when missing.
set -euo pipefail
cmd=${1:-}
ensure_packages() {
  local need=()
  command -v ippeveprinter >/dev/null || need+=(cups-ipp-utils)
  command -v avahi-daemon >/dev/null || need+=(avahi-daemon)
  command -v dbus-daemon >/dev/null || need+=(dbus)
  command -v ip >/dev/null || need+=(iproute2)
  command -v avahi-browse >/dev/null || need+=(avahi-utils)
  if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; }
  fi
}
ensure_mdns() {
  # One start at a time: tests start printers in parallel.
  exec 9>/run/appliance-mdns.lock
  flock 9
  if [ ! -S /run/dbus/system_bus_socket ] || ! dbus-send --system --dest=org.freedesktop.DBus --print-reply / org.freedesktop.DBus.ListNames >/dev/null 2>&1; then
    mkdir -p /run/dbus; rm -f /run/dbus/pid
    dbus-daemon --system --fork
  fi
  # A daemon started by an older version of this recipe lacks addresses.
  local conf=/run/appliance-mdns-avahi-v2.conf
  if avahi-daemon --check 2>/dev/null && [ ! -f "$conf" ]; then
    avahi-daemon -k 2>/dev/null || true
    for _ in $(seq 1 50); do avahi-daemon --check 2>/dev/null || break; sleep 0.1; done
  fi
  if ! avahi-daemon --check 2>/dev/null; then
    ip netns list | grep -qw appliance-mdns || ip netns add appliance-mdns
    ip netns exec appliance-mdns ip link set lo up
    cat >"$conf" <<EOC
[server]
allow-interfaces=lo
use-ipv4=yes
use-ipv6=no
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
publish-addresses=yes
publish-hinfo=no
publish-workstation=no
[reflector]
enable-reflector=no
EOC
    ip netns exec appliance-mdns avahi-daemon -f "$conf" --no-drop-root --no-chroot -D
    for _ in $(seq 1 50); do avahi-daemon --check 2>/dev/null && break; sleep 0.1; done
  fi
  flock -u 9
}
case "$cmd" in
start)
  port=${2:?port}; dir=${3:?dir}; name=${4:-Printer$port}
  ensure_packages; ensure_mdns
  mkdir -p "$dir"
  keys=()
  if [ -n "${IPP_PRINTER_KEYS:-}" ]; then keys=(-K "$IPP_PRINTER_KEYS"); fi
  setsid ippeveprinter -k -c /bin/true -d "$dir" -n localhost -p "$port" -r off "${keys[@]}" \
    -f application/pdf,application/postscript,image/jpeg,image/pwg-raster,image/urf,application/octet-stream \
    -s 60,40 "$name" >"$dir/.printer.log" 2>&1 &
  echo $! >"$dir/.printer.pid"
  for _ in $(seq 1 100); do
    if ipptool -T 2 "ipp://127.0.0.1:$port/ipp/print" get-printer-attributes.test >/dev/null 2>&1; then
      echo "ipp://127.0.0.1:$port/ipp/print"; exit 0
    fi
    kill -0 "$(cat "$dir/.printer.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "ippeveprinter did not answer on port $port; see $dir/.printer.log" >&2; exit 1
  ;;
mdns)
  ensure_packages; ensure_mdns
  ;;
stop)
  dir=${2:?dir}
  if [ -f "$dir/.printer.pid" ]; then
    kill -TERM "$(cat "$dir/.printer.pid")" 2>/dev/null || true
    rm -f "$dir/.printer.pid"
  fi
  ;;
*)
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
