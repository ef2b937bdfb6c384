"""The PostgreSQL store (psycopg 3, pooled)."""
