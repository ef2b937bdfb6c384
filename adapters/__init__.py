"""Adapters: storage, the gRPC API and the command line. The composition root lives here."""
