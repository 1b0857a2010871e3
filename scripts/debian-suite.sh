# Sourced by prepare-samba-tree.sh and samba-runtime.sh: where Debian
# packages of another suite (e.g. trixie on a bookworm host) come from.
# Defines functions only.

# The host's Debian codename, e.g. "bookworm".
host_codename() {
	. /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"
}

# The archive and security mirrors the host already uses (its deb822
# sources), falling back to deb.debian.org. COPYOFFLOAD_DEBIAN_MIRROR and
# COPYOFFLOAD_SECURITY_MIRROR override them.
_host_uri() { # $1: 1 for the security archive, 0 for the main one
	local f=/etc/apt/sources.list.d/debian.sources
	[ -f "$f" ] || return 0
	awk -v want="$1" '
		/^URIs:/ { uri = $2 }
		/^Suites:/ { sec = ($0 ~ /-security/) }
		/^$/ { if (uri != "" && sec == want) { print uri; exit } uri = ""; sec = 0 }
		END { if (uri != "" && sec == want) print uri }' "$f" | head -n 1
}

debian_mirror() {
	local uri=${COPYOFFLOAD_DEBIAN_MIRROR:-$(_host_uri 0)}
	echo "${uri:-http://deb.debian.org/debian}"
}

debian_security_mirror() {
	local uri=${COPYOFFLOAD_SECURITY_MIRROR:-$(_host_uri 1)}
	echo "${uri:-http://deb.debian.org/debian-security}"
}

# Writes a deb822 sources file for suite $2 (with its -updates and -security
# suites) of package types $1 ("deb" or "deb-src") to $3. Signed only by that
# release's archive keys from debian-archive-keyring.
write_suite_sources() {
	local types=$1 suite=$2 out=$3
	local keys=/usr/share/keyrings/debian-archive-$suite-automatic.gpg
	local sec_keys=/usr/share/keyrings/debian-archive-$suite-security-automatic.gpg
	if [ ! -f "$keys" ] || [ ! -f "$sec_keys" ]; then
		echo "no archive keys for $suite in /usr/share/keyrings: upgrade debian-archive-keyring" >&2
		return 1
	fi
	cat >"$out" <<EOF
# Written by copyoffload (scripts/debian-suite.sh): Debian $suite, $types only.
Types: $types
URIs: $(debian_mirror)
Suites: $suite $suite-updates
Components: main
Signed-By: $keys

Types: $types
URIs: $(debian_security_mirror)
Suites: $suite-security
Components: main
Signed-By: $sec_keys
EOF
}
