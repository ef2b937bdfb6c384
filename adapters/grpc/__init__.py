"""The gRPC adapter: servicers that translate, interceptors, the server factory."""
