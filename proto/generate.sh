#!/usr/bin/env bash
# Regenerates the Go and Python code of the wire contract.
#
#   proto/generate.sh [ROOT]
#
# writes under ROOT (default: the repository root), so that `make proto-check`
# can generate into a scratch folder and diff against what is committed.
# One compiler for both languages: grpcio-tools' protoc, with the Go plugins
# pinned in proto/tools/go.mod.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${1:-$(dirname "$here")}
python=${PYTHON:-$(dirname "$here")/.venv/bin/python}

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
  inference/grpc_service.proto

# source_relative keeps the proto's folder; the Go package is the folder itself.
mv "$go_out"/inference/*.go "$go_out"/ && rmdir "$go_out/inference"
# The Python files live inside the package, so their import must be relative.
mv "$py_out"/inference/* "$py_out"/ && rmdir "$py_out/inference"
sed -i 's/^from inference import grpc_service_pb2/from . import grpc_service_pb2/' "$py_out/grpc_service_pb2_grpc.py"
cat > "$py_out/__init__.py" <<'PY'
"""Generated OIP v2 protobuf and gRPC code; regenerate with `make proto`."""
PY
