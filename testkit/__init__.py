"""Test and benchmark infrastructure shared by tests/ and bench/ (moto's S3 server, ...).

Not part of tierlog: the wheel does not ship it (pyproject's `packages.find` includes only
the service's packages), and it needs the `test` or `bench` extras (moto, boto3)."""
