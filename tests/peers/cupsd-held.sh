#!/usr/bin/env bash
# Start or stop a private CUPS scheduler on a loopback port, as a performance
# and behaviour peer: one raw queue "held" whose jobs are held indefinitely
# (job-hold-until=indefinite), so submitted jobs just accumulate, as in a
# pull-print queue. Modelled on how CUPS runs its own tests (an unprivileged
# cupsd with its own ServerRoot).
#
#   cupsd-held.sh start [PORT] [DIR]   start it (default 18631, /tmp/cupsd-held);
#                                   prints the queue URI when it answers
#   cupsd-held.sh stop [DIR]           stop it
#
# Submit like this:  ipptool -tf doc.pdf ipp://127.0.0.1:18631/printers/held print-job.test
#                    lp -h 127.0.0.1:18631 -d held doc.pdf
# Needs Debian's `cups` and `cups-ipp-utils`; installs them when missing (root).
# Note for fair comparisons: cupsd does not fsync job files by default
# (SyncOnClose No); this script sets SyncOnClose Yes so both sides pay for
# durability; pass SYNC=No to measure it without. LOG_LEVEL (default warn)
# sets its error_log's level, for tests that want to show cupsd's side.
set -euo pipefail
cmd=${1:-}
case "$cmd" in
start)
  port=${2:-18631}
  dir=${3:-/tmp/cupsd-held}
  sync=${SYNC:-Yes}
  log_level=${LOG_LEVEL:-warn}
  if ! command -v cupsd >/dev/null || ! command -v ipptool >/dev/null || ! command -v lpstat >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q cups cups-client cups-ipp-utils >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q cups cups-client cups-ipp-utils >/dev/null; }
  fi
  id cupspeer >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin cupspeer
  if [ -f "$dir/runner.pid" ] && kill -0 "$(cat "$dir/runner.pid")" 2>/dev/null; then
    echo "already running: pid $(cat "$dir/runner.pid")" >&2; exit 1
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  if ! setpriv --reuid cupspeer --regid cupspeer --init-groups test -x "$dir"; then
    echo "user cupspeer cannot enter $dir: make its parent folders world-executable (chmod o+x)" >&2; exit 1
  fi
  mkdir -p "$dir"/{bin/backend,bin/filter,share,log,spool/temp,ppd,ssl,out}
  ln -s /usr/lib/cups/backend/* "$dir/bin/backend/" 2>/dev/null || true
  ln -s /usr/lib/cups/filter/* "$dir/bin/filter/" 2>/dev/null || true
  for d in daemon cgi-bin notifier monitor driver; do [ -e /usr/lib/cups/$d ] && ln -s /usr/lib/cups/$d "$dir/bin/$d"; done
  for d in /usr/share/cups/*; do ln -s "$d" "$dir/share/"; done
  cat >"$dir/cupsd.conf" <<EOC
Browsing Off
Listen 127.0.0.1:$port
Listen $dir/sock
MaxLogSize 0
LogLevel $log_level
MaxJobs 0
MaxJobsPerPrinter 0
MaxJobsPerUser 0
MaxClients 1000
PreserveJobHistory Yes
PreserveJobFiles Yes
<Policy default>
<Limit All>
Order Allow,Deny
</Limit>
</Policy>
EOC
  cat >"$dir/cups-files.conf" <<EOC
FileDevice yes
Printcap
User cupspeer
Group cupspeer
ServerRoot $dir
StateDir $dir
ServerBin $dir/bin
CacheDir $dir/share
DataDir $dir/share
DocumentRoot /usr/share/cups/doc-root
RequestRoot $dir/spool
TempDir $dir/spool/temp
AccessLog $dir/log/access_log
ErrorLog $dir/log/error_log
PageLog $dir/log/page_log
SyncOnClose $sync
Sandboxing Off
EOC
  cat >"$dir/printers.conf" <<EOC
<Printer held>
Accepting Yes
DeviceURI file://$dir/out/held.prn
Info Held raw queue
State Idle
Option job-hold-until indefinite
</Printer>
EOC
  chown -R cupspeer:cupspeer "$dir"
  (cd "$dir" && exec setsid setpriv --reuid cupspeer --regid cupspeer --init-groups env HOME="$dir" LANG=C CUPS_SERVERROOT="$dir" CUPS_STATEDIR="$dir" CUPS_DATADIR="$dir/share" \
     /usr/sbin/cupsd -c "$dir/cupsd.conf" -s "$dir/cups-files.conf" -f >"$dir/log/stdout" 2>&1 & echo $! >"$dir/runner.pid")
  for _ in $(seq 1 100); do
    if lpstat -h "127.0.0.1:$port" -a held >/dev/null 2>&1; then
      echo "ipp://127.0.0.1:$port/printers/held"; exit 0
    fi
    sleep 0.1
  done
  echo "cupsd did not answer on port $port; see $dir/log" >&2; exit 1
  ;;
stop)
  dir=${2:-/tmp/cupsd-held}
  if [ -f "$dir/runner.pid" ]; then
    pid=$(cat "$dir/runner.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$dir/runner.pid"
  fi
  ;;
*)
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
