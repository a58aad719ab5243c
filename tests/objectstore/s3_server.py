"""A real S3-API server on loopback for the tests: moto's server mode on 127.0.0.1 and a free port.

Each test gets its own bucket; the bucket policy lets anyone read (GetObject, and ListBucket so a
missing key answers 404 rather than 403), as a public CDN origin would.
"""

from __future__ import annotations

import itertools
import json
import socket
from dataclasses import dataclass

import boto3

from repo_tool.publish.s3 import S3Bucket, S3Location, make_s3_client

ACCESS_KEY = "cfl-test-access-key"
SECRET_KEY = "cfl-test-secret-key"
_names = itertools.count(1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_session() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
    )


def credentials_env() -> dict[str, str]:
    """Environment for a `cfl-repo` subprocess: test credentials, no profile or instance lookups."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent/cfl-test-aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/cfl-test-aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@dataclass
class S3Server:
    endpoint: str

    def client(self):  # type: ignore[no-untyped-def]
        return make_s3_client(self.endpoint, session=test_session())

    def new_bucket(self, prefix: str = "lib/v1/", *, object_lock: bool = False) -> S3Bucket:
        """A fresh, publicly readable bucket; the returned S3Bucket addresses ``prefix`` in it.
        ``object_lock``: created with S3 Object Lock enabled (which turns versioning on)."""
        name = f"cfl-test-{next(_names)}"
        client = self.client()
        if object_lock:
            client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        else:
            client.create_bucket(Bucket=name)
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject"],
                    "Resource": f"arn:aws:s3:::{name}/*",
                },
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:ListBucket"],
                    "Resource": f"arn:aws:s3:::{name}",
                },
            ],
        }
        client.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
        return S3Bucket(client, S3Location(name, prefix))

    def http_url(self, bucket: S3Bucket) -> str:
        """The plain HTTP address clients read the published tree from (path-style)."""
        return f"{self.endpoint}/{bucket.location.bucket}/{bucket.location.prefix}"
