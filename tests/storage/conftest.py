"""A local S3-compatible server for the lake's S3 tests: moto's, on 127.0.0.1 (no internet)."""
from __future__ import annotations

import itertools
import logging
from typing import Iterator

import pytest
from pydantic import SecretStr

from sentinel_ray.config import Settings
from tests.fakes.net import free_port

BUCKET = "sentinel-lake"
S3_KEY_ID, S3_SECRET = "lake-test-key-id", "lake-test-secret-value"
_prefixes = itertools.count()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3 server in a thread of the test process, with one bucket; Ray workers
    reach it over TCP like any S3 endpoint."""
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    pafs.S3FileSystem(access_key=S3_KEY_ID, secret_key=S3_SECRET, region="us-east-1", scheme="http",
                      endpoint_override=f"127.0.0.1:{port}", allow_bucket_creation=True).create_dir(BUCKET)
    yield url
    server.stop()


def on_s3(settings: Settings, endpoint: str) -> Settings:
    """`settings` with a lake of its own under the test bucket."""
    return settings.model_copy(update={
        "lake_uri": f"s3://{BUCKET}/{settings.warehouse_database}-{next(_prefixes)}",
        "s3_endpoint_url": endpoint, "s3_region": "us-east-1",
        "s3_access_key_id": SecretStr(S3_KEY_ID), "s3_secret_access_key": SecretStr(S3_SECRET)})


@pytest.fixture
def s3_settings(isolated_settings: Settings, s3_endpoint: str) -> Settings:
    return on_s3(isolated_settings, s3_endpoint)


def bucket_keys(endpoint: str, prefix: str) -> list[str]:
    """Every object under `prefix`, listed by a client of its own (boto3), not through the lake."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=S3_KEY_ID,
                          aws_secret_access_key=S3_SECRET)
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(keys)
