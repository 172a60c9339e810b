"""tierlog's gRPC API: `tierlog.proto` and the Python modules generated from it.

The generated modules are committed, so running tierlog needs no grpcio-tools.
After changing the proto, regenerate them from the repository root (the include path
`-I.` makes the generated imports package imports, `from api.proto import ...`):

    python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. api/proto/tierlog.proto
"""
