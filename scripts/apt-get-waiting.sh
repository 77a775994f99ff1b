#!/bin/sh
# apt-get "$@", waiting while another process holds the package manager's lock (an unattended
# upgrade at boot does), up to SHAREWHEEL_APT_WAIT seconds (default 600), and saying for whom,
# instead of failing with apt's own two lines. SHAREWHEEL_APT_STEP: seconds per attempt (30).
set -u
step=${SHAREWHEEL_APT_STEP:-30}
limit=${SHAREWHEEL_APT_WAIT:-600}
waited=0
while :; do
  if out=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$step" "$@" 2>&1); then
    exit 0
  fi
  case $out in
    *"Could not get lock"*|*"Unable to lock"*|*"Unable to acquire"*)
      waited=$((waited + step))
      if [ "$waited" -ge "$limit" ]; then
        echo "scripts/apt-get-waiting.sh: the package manager stayed locked for $limit s; apt-get said:" >&2
        echo "$out" >&2
        exit 1
      fi
      holder=$(printf '%s\n' "$out" | sed -n 's/.*held by process \([0-9][0-9]*\).*/\1/p' | head -n 1)
      if [ -z "$holder" ] && [ -r /proc/locks ]; then  # apt does not always say: ask the kernel
        for lock in /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock; do
          inode=$(stat -c %i "$lock" 2>/dev/null) || continue
          holder=$(awk -v inode="$inode" '{ n = split($6, id, ":"); if (id[n] == inode) { print $5; exit } }' /proc/locks)
          [ -n "$holder" ] && break
        done
      fi
      what=""
      if [ -n "$holder" ]; then
        what=" (process $holder: $(tr '\000\n' '  ' < "/proc/$holder/cmdline" 2>/dev/null || echo "gone"))"
      fi
      echo "scripts/apt-get-waiting.sh: waiting for the package manager, locked by another process$what" >&2;;
    *)
      echo "$out" >&2
      exit 1;;
  esac
done
