"""The read path's tests use the tiering tests' stores: a local folder and moto's S3 server
(moto's server itself is a fixture of tests/conftest.py)."""

from tests.tiering.conftest import make_store  # noqa: F401
