#!/bin/bash
# Install Roost on a Debian 12 machine and start it: the first command of the README.
#
#   sudo ./setup.sh [--env FILE] [--no-start] [--systemd]
#   sudo DOMAIN=example.com HOSTNAMES=mail.example.com ./setup.sh
#   sudo ./setup.sh --uninstall
#
# What it does, each step safe to repeat:
#   1. installs the Debian packages Roost drives (Postfix, Dovecot, nginx, Redis, ...);
#   2. stops and disables the system-wide postfix, dovecot and nginx the packages start,
#      since Roost runs its own instances on the same ports (and redis-server too, when
#      this run installed it: Roost's Redis listens on a socket of its own);
#   3. creates the virtualenv /opt/roost/venv from Debian's /usr/bin/python3, installs
#      this checkout into it and links /usr/local/bin/roost;
#   4. writes /etc/roost/mailu.env when there is none: from --env FILE and/or settings
#      given in the environment, with a random SECRET_KEY, DOMAIN/HOSTNAMES from the
#      machine's name when not given, and an admin@DOMAIN account whose generated password
#      is printed once at the end and stored nowhere in clear;
#   5. prepares ROOT (roost init), installs deploy/systemd/roost.service (enabled and
#      started only with --systemd), and runs `roost up` in the foreground unless
#      --no-start or --systemd.
#
# --uninstall undoes steps 3 to 5 outside the data: it stops roost.service, takes this
# stack out of the host Postfix's alternate_config_directories and removes the unit, the
# virtualenv and the roost link. The settings and ROOT (mail, store, keys) stay, as do the
# Debian packages and the system services step 2 disabled; it prints how to remove or
# re-enable those by hand.
set -euo pipefail

VENV=/opt/roost/venv
ETC=/etc/roost
SETTINGS=$ETC/mailu.env
UNIT=/etc/systemd/system/roost.service
LINK=/usr/local/bin/roost
# System services that would hold Roost's ports: always stopped and disabled.
CONFLICTING=(postfix dovecot nginx)

say() { printf 'setup.sh: %s\n' "$*"; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<'EOF'
Usage: sudo ./setup.sh [--env FILE] [--no-start] [--systemd]
       sudo ./setup.sh --uninstall

Installs Roost on this Debian 12 machine and starts it in the foreground.

  --env FILE   settings in mailu.env format for the first /etc/roost/mailu.env
               (settings in the environment are used too, e.g.
               sudo DOMAIN=example.com HOSTNAMES=mail.example.com ./setup.sh)
  --no-start   install only; start later with: roost up
  --systemd    enable and start roost.service instead of running in the foreground
  --uninstall  stop Roost and remove the program; the settings and the mail stay
EOF
}

ENV_FILE=""
START=1
SYSTEMD=0
UNINSTALL=0
while [ $# -gt 0 ]; do
    case "$1" in
        --env) [ $# -ge 2 ] || die "--env needs a file name"; ENV_FILE=$2; shift 2 ;;
        --env=*) ENV_FILE=${1#--env=}; shift ;;
        --no-start) START=0; shift ;;
        --systemd) SYSTEMD=1; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# -- checks before touching anything ---------------------------------------------------------

[ "$(id -u)" -eq 0 ] || die "run me as root: sudo ./setup.sh"

if [ ! -r /etc/os-release ] || [ ! -f /etc/debian_version ]; then
    die "Roost installs on Debian 12 (bookworm); this system is not Debian"
fi
# shellcheck disable=SC1091
. /etc/os-release
case " ${ID:-} ${ID_LIKE:-} " in
    *" debian "*) ;;
    *) die "Roost installs on Debian 12 (bookworm); this system is ${PRETTY_NAME:-unknown}" ;;
esac
if [ "${ID:-}" = debian ] && [ "${VERSION_ID:-}" != 12 ]; then
    say "warning: made for Debian 12; this is ${PRETTY_NAME:-Debian ${VERSION_ID:-?}}"
fi

SOURCE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -f "$SOURCE/pyproject.toml" ] || [ ! -d "$SOURCE/roost" ]; then
    die "run me from a clone of the Roost repository ($SOURCE has no pyproject.toml)"
fi

if [ -n "$ENV_FILE" ]; then
    [ -f "$ENV_FILE" ] || die "--env $ENV_FILE: no such file"
    ENV_FILE=$(realpath "$ENV_FILE")
fi

systemd_running() { [ -d /run/systemd/system ]; }

if [ "$SYSTEMD" -eq 1 ] && ! systemd_running; then
    die "--systemd: systemd is not running on this machine; start Roost with: roost up"
fi

uninstall() {
    local root=""
    if systemd_running && { systemctl is-enabled --quiet roost.service 2>/dev/null \
        || systemctl is-active --quiet roost.service 2>/dev/null; }; then
        say "stopping and disabling roost.service"
        systemctl disable --now roost.service
    fi
    if [ -x "$VENV/bin/python" ] && [ -f "$SETTINGS" ]; then
        # Refuses while a `roost up` runs; prints ROOT.
        root=$("$VENV/bin/python" -m roost.bootstrap.install uninstall --env "$SETTINGS") || exit 1
    fi
    if [ -f "$UNIT" ]; then
        rm -f "$UNIT"
        if systemd_running; then systemctl daemon-reload; fi
        say "removed $UNIT"
    fi
    if [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$VENV/bin/roost" ]; then
        rm -f "$LINK"
        say "removed $LINK"
    fi
    if [ -d "$VENV" ]; then
        rm -rf "$VENV"
        rmdir "$(dirname "$VENV")" 2>/dev/null || true
        say "removed $VENV"
    fi
    echo
    echo "Roost is uninstalled. Kept, to be removed by hand once you no longer need them:"
    [ -f "$SETTINGS" ] && echo "  settings:  $ETC (rm -r $ETC)"
    [ -n "$root" ] && echo "  data:      $root: the mail, the store and the keys (rm -r $root)"
    echo "  packages:  the Debian packages of deploy/debian-packages.txt (apt-get remove ...)"
    echo "  services:  ${CONFLICTING[*]} were disabled for Roost's ports:"
    echo "             systemctl enable --now ${CONFLICTING[*]}"
    for user in _roost-web _radicale; do
        if id "$user" >/dev/null 2>&1; then
            echo "  user:      $user, made for Roost (userdel $user)"
        fi
    done
}

if [ "$UNINSTALL" -eq 1 ]; then
    uninstall
    exit 0
fi

# -- 1. Debian packages -----------------------------------------------------------------------

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

REDIS_WAS_INSTALLED=0
installed redis-server && REDIS_WAS_INSTALLED=1
RSPAMD_WAS_INSTALLED=0
installed rspamd && RSPAMD_WAS_INSTALLED=1
UNBOUND_WAS_INSTALLED=0
installed unbound && UNBOUND_WAS_INSTALLED=1
PHP_FPM_WAS_INSTALLED=0
installed php8.2-fpm && PHP_FPM_WAS_INSTALLED=1

# The same list test.sh installs, so what the tests run is what users run.
mapfile -t PACKAGES < <(grep -v '^\s*\(#\|$\)' "$SOURCE/deploy/debian-packages.txt")
say "installing Debian packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"

# -- 2. the packages' own daemons ---------------------------------------------------------------

# Stop a daemon through its pid file, only if that pid runs the expected program
# (the program's file name as /proc/PID/exe shows it).
stop_by_pidfile() {
    local pidfile=$1 program=$2 pid exe waited=0
    [ -r "$pidfile" ] || return 0
    pid=$(head -n 1 "$pidfile" | tr -dc '0-9')
    [ -n "$pid" ] || return 0
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    [ "${exe##*/}" = "$program" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && [ $waited -lt 100 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
}

stop_system_service() {
    local service=$1
    if systemd_running; then
        if systemctl list-unit-files "$service.service" >/dev/null 2>&1; then
            systemctl disable --now "$service" >/dev/null 2>&1 || true
        fi
    elif [ -x "/etc/init.d/$service" ]; then
        service "$service" stop >/dev/null 2>&1 || true
        update-rc.d "$service" disable >/dev/null 2>&1 || true
    fi
    case "$service" in
        postfix) stop_by_pidfile /var/spool/postfix/pid/master.pid master ;;
        dovecot) stop_by_pidfile /run/dovecot/master.pid dovecot ;;
        nginx) stop_by_pidfile /run/nginx.pid nginx ;;
        # Debian's redis-server is a link to redis-check-rdb.
        redis-server) stop_by_pidfile /run/redis/redis-server.pid redis-check-rdb ;;
        rspamd) stop_by_pidfile /run/rspamd/rspamd.pid rspamd ;;
        unbound) stop_by_pidfile /run/unbound.pid unbound ;;
        php8.2-fpm) stop_by_pidfile /run/php/php8.2-fpm.pid php-fpm8.2 ;;
    esac
}

say "stopping the system-wide ${CONFLICTING[*]}: Roost runs its own on the same ports"
for service in "${CONFLICTING[@]}"; do
    stop_system_service "$service"
done
if [ "$REDIS_WAS_INSTALLED" -eq 0 ]; then
    say "stopping the system-wide redis-server this run installed: Roost runs its own"
    stop_system_service redis-server
fi
if [ "$RSPAMD_WAS_INSTALLED" -eq 0 ]; then
    say "stopping the system-wide rspamd this run installed: Roost runs its own"
    stop_system_service rspamd
fi
if [ "$UNBOUND_WAS_INSTALLED" -eq 0 ]; then
    say "stopping the system-wide unbound this run installed: Roost runs its own"
    stop_system_service unbound
fi
if [ "$PHP_FPM_WAS_INSTALLED" -eq 0 ]; then
    say "stopping the system-wide php8.2-fpm this run installed: Roost runs its own for Roundcube"
    stop_system_service php8.2-fpm
fi

# -- 3. the virtualenv ---------------------------------------------------------------------------

# Debian's python3, never another one on PATH (pyenv, /usr/local): what a user's machine
# and CI have is Debian's.
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || die "$PYTHON is missing after installing python3"
if [ -x "$VENV/bin/python" ]; then
    base=$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix)' 2>/dev/null || true)
    if [ "$base" != /usr ]; then
        say "recreating $VENV: it was not made from $PYTHON"
        rm -rf "$VENV"
    fi
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtualenv $VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
fi
say "installing Roost from $SOURCE into $VENV"
# pip rebuilds a local directory every time, so a changed checkout is always installed.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$SOURCE"
ln -sfn "$VENV/bin/roost" "$LINK"

# -- 4. settings -------------------------------------------------------------------------------------

GENERATED_PW=""
mkdir -p "$ETC"
chmod 0755 "$ETC"
if [ -f "$SETTINGS" ]; then
    say "keeping the existing $SETTINGS"
    if [ -n "$ENV_FILE" ] && [ "$ENV_FILE" != "$SETTINGS" ]; then
        say "warning: --env $ENV_FILE not used; edit $SETTINGS instead"
    fi
else
    args=(new-settings --output "$SETTINGS")
    [ -n "$ENV_FILE" ] && args+=(--from "$ENV_FILE")
    GENERATED_PW=$("$VENV/bin/python" -m roost.bootstrap.install "${args[@]}") || exit 1
    say "wrote $SETTINGS"
fi

# postqueue/sendmail of this stack work for non-root users only when the host's Postfix
# lists the stack's configuration directory.
"$VENV/bin/python" -m roost.bootstrap.install postfix-prerequisites --env "$SETTINGS"

# -- 5. prepare ROOT, systemd, start -----------------------------------------------------------------

if [ -n "$GENERATED_PW" ]; then
    INITIAL_ADMIN_PW="$GENERATED_PW" "$LINK" --env "$SETTINGS" init
else
    "$LINK" --env "$SETTINGS" init
fi

if [ -d /etc/systemd/system ]; then
    install -m 0644 "$SOURCE/deploy/systemd/roost.service" "$UNIT"
    if systemd_running; then
        systemctl daemon-reload
    fi
fi

summary() {
    local account domain
    account=$(sed -n 's/^INITIAL_ADMIN_ACCOUNT=//p' "$SETTINGS" | tail -n 1)
    domain=$(sed -n 's/^INITIAL_ADMIN_DOMAIN=//p' "$SETTINGS" | tail -n 1)
    echo
    echo "Roost is installed."
    echo "  settings:       $SETTINGS (edit, then restart Roost)"
    echo "  command:        $LINK (roost status, roost user ..., roost --help)"
    if [ -n "$GENERATED_PW" ]; then
        echo "  administrator:  $account@$domain"
        echo "  password:       $GENERATED_PW"
        echo "                  (generated now and shown only this once: note it)"
    fi
    echo
}
summary

if [ "$SYSTEMD" -eq 1 ]; then
    systemctl enable --now roost.service
    say "roost.service is enabled and started; follow it with: journalctl -u roost -f"
    exit 0
fi
if [ "$START" -eq 0 ]; then
    say "installed; start Roost with: roost up (or: systemctl enable --now roost)"
    exit 0
fi
if systemd_running && systemctl is-active --quiet roost.service; then
    say "roost.service is already running; not starting a second Roost"
    exit 0
fi
say "starting Roost in the foreground (Ctrl-C stops it)"
exec "$LINK" --env "$SETTINGS" up
