"""Generated OIP v2 protobuf and gRPC code; regenerate with `make proto`."""
