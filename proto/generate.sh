#!/usr/bin/env bash
# Regenerates the Go and Python code of the wire contract.
#
#   proto/generate.sh [ROOT]
#
# writes under ROOT (default: the repository root), so that `make proto-check`
# can generate into a scratch folder and diff against what is committed.
# One compiler for both languages: grpcio-tools' protoc, with the Go plugins
# pinned in proto/tools/go.mod. grpcio-tools is pinned in proto/tools/requirements.txt
# and lives in its own venv (proto/tools/.venv, made here the first time and again
# whenever requirements.txt changes), so the protoc that writes the Python code is
# not whatever the service's venv holds: see requirements.txt for why it is older.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${1:-$(dirname "$here")}
tools_venv=${PROTO_TOOLS_VENV:-$here/tools/.venv}
python=$tools_venv/bin/python

if ! cmp -s "$here/tools/requirements.txt" "$tools_venv/requirements.txt"; then
  echo "proto/generate.sh: installing $(grep -v '^#' "$here/tools/requirements.txt" | xargs) into $tools_venv" >&2
  "${PYTHON_SYS:-python3}" -m venv --clear "$tools_venv"
  "$python" -m pip install --quiet --disable-pip-version-check -r "$here/tools/requirements.txt"
  cp "$here/tools/requirements.txt" "$tools_venv/requirements.txt"
fi

go_out=$root/edge-go/gen/inferencepb
py_out=$root/inference-py/src/tandem_inference/pb
mkdir -p "$go_out" "$py_out"

plugins=$(cd "$here/tools" && echo \
  --plugin=protoc-gen-go="$(go tool -n protoc-gen-go)" \
  --plugin=protoc-gen-go-grpc="$(go tool -n protoc-gen-go-grpc)")

# shellcheck disable=SC2086 # $plugins is two flags.
"$python" -m grpc_tools.protoc -I "$here" $plugins \
  --go_out="$go_out" --go_opt=paths=source_relative \
  --go-grpc_out="$go_out" --go-grpc_opt=paths=source_relative \
  --python_out="$py_out" --pyi_out="$py_out" --grpc_python_out="$py_out" \
  inference/grpc_service.proto inference/model_config.proto

# source_relative keeps the proto's folder; the Go package is the folder itself.
mv "$go_out"/inference/*.go "$go_out"/ && rmdir "$go_out/inference"
# The Python files live inside the package, so their import must be relative.
mv "$py_out"/inference/* "$py_out"/ && rmdir "$py_out/inference"
sed -i 's/^from inference import \([a-z_]*_pb2\)/from . import \1/' \
  "$py_out/grpc_service_pb2_grpc.py" "$py_out/grpc_service_pb2.py" "$py_out/grpc_service_pb2.pyi"
# model_config.proto declares no service: no gRPC module for it.
rm "$py_out/model_config_pb2_grpc.py"
# The messages' full names (inference.ModelInferRequest, inference.ModelConfig) are
# the OIP's and Triton's, so tritonclient.grpc and kserve register the same names in
# protobuf's default pool, from files of other names, and whichever is imported
# second fails ("duplicate symbol"). Tandem's messages go into a pool of their own,
# so the service, Triton's client and KServe's can share a process (the tests do).
sed -i -e 's/_descriptor_pool\.Default()/_pool.POOL/' \
  -e 's/^from google\.protobuf\.internal import builder as _builder$/&\nfrom . import _pool/' \
  "$py_out/grpc_service_pb2.py" "$py_out/model_config_pb2.py"
cat > "$py_out/_pool.py" <<'PY'
"""The descriptor pool of Tandem's messages, apart from protobuf's default pool
(proto/generate.sh says why); written by proto/generate.sh."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
PY
cat > "$py_out/__init__.py" <<'PY'
"""Generated OIP v2 protobuf and gRPC code; regenerate with `make proto`."""
PY
