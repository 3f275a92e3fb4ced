#!/bin/sh
# Runs inside the freshly debootstrapped root (under chroot, so every path and symlink resolves
# inside it) before it becomes the dev image: removes what a throwaway server never reads.
# Usage: prune.sh MAJOR
set -eu
major="$1"

# The cluster postgresql-common's postinst created ("main"): every container initdb's its own.
rm -rf "/var/lib/postgresql/$major" "/etc/postgresql/$major"

# JIT (llvmjit.so) is the only user of LLVM and Z3, a third of the image; the entrypoint runs
# the server with jit=off, and without llvmjit.so PostgreSQL would not load them anyway.
rm -f "/usr/lib/postgresql/$major/lib/llvmjit.so" "/usr/lib/postgresql/$major/lib/llvmjit_types.bc"
rm -rf "/usr/lib/postgresql/$major/lib/bitcode"
rm -f /usr/lib/*/libLLVM* /usr/lib/*/libz3.so*

# Perl serves only postgresql-common's wrapper scripts (pg_ctlcluster and friends); the
# entrypoint calls initdb and postgres directly. perl-base, which dpkg itself needs, stays.
perl_pkgs=$(dpkg-query -W -f '${db:Status-Status} ${Package}\n' perl 'perl-modules-*' 'libperl5*' \
    2>/dev/null | awk '$1 == "installed" { print $2 }')
if [ -n "$perl_pkgs" ]; then
    # shellcheck disable=SC2086 # one package name per word
    dpkg --purge --force-depends $perl_pkgs >/dev/null 2>&1
fi

# Documentation, manual pages, message translations, locale sources (C.UTF-8 is built in).
rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* \
    /usr/share/i18n/* /usr/share/lintian/*

# apt's package lists and downloaded archives, and logs of the build.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/*.log \
    /var/log/apt/* /tmp/* /var/tmp/*

# The password file's directory, so that the entrypoint's copy lands in a private place.
mkdir -p /run/secrets
chmod 700 /run/secrets
