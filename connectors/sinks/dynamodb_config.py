"""Settings of the DynamoDB target (``[[targets]] kind = "dynamodb"``)."""

from __future__ import annotations

from typing import Literal

from connectors.config import TargetConfigBase


class DynamoDBTargetConfig(TargetConfigBase):
    kind: Literal["dynamodb"] = "dynamodb"
    table: str
    region: str = "us-east-1"
    endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_key_prefix: str | None = None
    s3_endpoint_url: str | None = None
