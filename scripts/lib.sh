# Shared helpers for the project's scripts. Sourced, never run.

# ensure_apt PKG... installs the Debian packages that are missing (as root, or through sudo).
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}" >&2
  # One install at a time: two of our scripts started together (the tests of two clones, the
  # tests and the quickstart) would otherwise race for apt's locks and one would fail. apt also
  # waits for a lock held by anything else, up to APT_LOCK_WAIT_S.
  local wait="-o DPkg::Lock::Timeout=${APT_LOCK_WAIT_S:-600}"
  (
    flock -w "${APT_LOCK_WAIT_S:-600}" 9 || { echo "timed out waiting for $APT_SERIAL_LOCK" >&2; exit 1; }
    $sudo apt-get $wait update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get $wait install -y -qq "${missing[@]}" >/dev/null
  ) 9>"$APT_SERIAL_LOCK"
}

# The lock file that serialises ensure_apt between our own scripts.
APT_SERIAL_LOCK="${TMPDIR:-/tmp}/sluice-apt.lock"

# ensure_build_tools: a C compiler for the crates that vendor C (glommio's liburing, zstd), and
# protoc with the well-known .proto files for etcd-client's generated gRPC code.
ensure_build_tools() {
  command -v cc >/dev/null 2>&1 || ensure_apt build-essential
  command -v protoc >/dev/null 2>&1 || ensure_apt protobuf-compiler libprotobuf-dev
}
