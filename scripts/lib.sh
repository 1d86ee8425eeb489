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
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ensure_build_tools: a C compiler for the crates that vendor C (glommio's liburing, zstd), and
# protoc with the well-known .proto files for etcd-client's generated gRPC code.
ensure_build_tools() {
  command -v cc >/dev/null 2>&1 || ensure_apt build-essential
  command -v protoc >/dev/null 2>&1 || ensure_apt protobuf-compiler libprotobuf-dev
}
