"""The stores the contract suite runs on: one class per target kind, one fixture per deployment.

A DynamoDB store is a fresh table (on moto or dynalite) plus a fresh S3 bucket on moto for the
values over the item limit; its dump is every item of the table and every object of the bucket.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import boto3

from connectors.sinks.dynamodb import DynamoDBSink
from replicator.embedded import create_dynamodb_table, create_s3_bucket

REGION = "us-east-1"
S3_KEY_PREFIX = "app/lg"


def scan_table(endpoint_url: str, table: str) -> list[dict[str, Any]]:
    """Every item of a table (consistent reads), sorted by key."""
    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**params)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    client.close()
    return sorted(items, key=lambda i: (i["PK"]["S"], i["SK"]["S"]))


def bucket_objects(endpoint_url: str, bucket: str | None) -> dict[str, bytes]:
    """Every object of a bucket, by key."""
    if not bucket:
        return {}
    client = boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION)
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    objects = {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}
    client.close()
    return objects


@dataclass(frozen=True)
class DynamoDBStore:
    ddb_endpoint: str
    s3_endpoint: str
    table: str
    bucket: str

    def sink(self) -> DynamoDBSink:
        return DynamoDBSink(
            "contract",
            self.table,
            REGION,
            endpoint_url=self.ddb_endpoint,
            s3_bucket=self.bucket,
            s3_key_prefix=S3_KEY_PREFIX,
            s3_endpoint_url=self.s3_endpoint,
        )

    def dump(self) -> dict[str, Any]:
        items = {
            f"dynamodb {i['PK']['S']} | {i['SK']['S']}": i for i in scan_table(self.ddb_endpoint, self.table)
        }
        objects = {f"s3 {k}": v for k, v in bucket_objects(self.s3_endpoint, self.bucket).items()}
        return {**items, **objects}


@dataclass(frozen=True)
class DynamoDBTarget:
    """DynamoDB at ``ddb_endpoint`` with S3 offload to a bucket at ``s3_endpoint``."""

    name: str
    ddb_endpoint: str
    s3_endpoint: str

    def new_store(self) -> DynamoDBStore:
        table, bucket = f"c-{uuid.uuid4().hex[:12]}", f"c-{uuid.uuid4().hex[:12]}"
        create_dynamodb_table(self.ddb_endpoint, table, REGION)
        create_s3_bucket(self.s3_endpoint, bucket, REGION)
        return DynamoDBStore(self.ddb_endpoint, self.s3_endpoint, table, bucket)
