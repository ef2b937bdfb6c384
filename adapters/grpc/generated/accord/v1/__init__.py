"""Generated from protos/accord/v1 by `make protos`; do not edit."""
