"""Settings of the DynamoDB target (``[[targets]] kind = "dynamodb"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from connectors.config import TargetConfigBase


class DynamoDBTargetConfig(TargetConfigBase):
    kind: Literal["dynamodb"] = "dynamodb"
    table: str
    region: str = "us-east-1"
    endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_key_prefix: str | None = None
    s3_endpoint_url: str | None = None
    # Requests in flight per apply process (BatchWriteItem, BatchGetItem, S3): a batch is as fast
    # as its slowest round of requests, so more in flight carries more per second where the table
    # answers each request slower than the process can send (measured in bench/ figure 3).
    concurrency: int = Field(16, ge=1, le=128)
