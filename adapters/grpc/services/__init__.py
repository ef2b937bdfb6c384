"""One servicer per service of the accord.v1 contract; each only translates."""
