#!/usr/bin/env bash
# Runs Roost's whole test suite on a Debian 12 machine, as root, installing what it needs:
# the Debian packages of deploy/*.txt and a virtual environment at .venv with the project
# and its test dependencies. Arguments are passed to pytest (e.g. ./test.sh tests/unit).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: run as root (the tests start Postfix, Dovecot and nginx on ports 25, 465, 993...)" >&2
    exit 2
fi

packages=$(grep -hv '^\s*#' deploy/debian-packages.txt deploy/debian-test-packages.txt | xargs)
status=$(dpkg-query -W -f='${Status}\n' $packages 2>/dev/null || echo missing)
if echo "$status" | grep -qv '^install ok installed$'; then
    echo "test.sh: installing Debian packages"
    apt-get update -qq
    # policy-rc.d keeps the packages from starting system-wide daemons on Roost's ports.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null
    # The EXIT trap covers a failed install; `exec` below would skip it.
    if trap -p EXIT | grep -q policy-rc.d; then
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "test.sh: creating .venv"
    /usr/bin/python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
