"""The read path's tests use the tiering tests' stores: a local folder and moto's S3 server."""

from tests.tiering.conftest import bucket, make_store, moto  # noqa: F401
