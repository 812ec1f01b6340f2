"""Settings of the Cosmos DB target (``[[targets]] kind = "cosmos"``): the container that
langgraph-checkpoint-cosmosdb's ``CosmosDBSaver`` reads."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from connectors.config import TargetConfigBase


class CosmosTargetConfig(TargetConfigBase):
    kind: Literal["cosmos"] = "cosmos"
    endpoint: str = Field(min_length=1)  # https://<account>.documents.azure.com:443/
    database: str = Field(min_length=1)
    container: str = Field(min_length=1)  # partition key path /partition_key, as the saver creates it
    # Optional: without it, $COSMOSDB_KEY (what CosmosDBSaver reads), else Azure identity
    # (DefaultAzureCredential: managed identity, workload identity, az login, ...).
    key: SecretStr | None = None

    @field_validator("endpoint")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be the account URL, e.g. https://<account>.documents.azure.com:443/")
        return value
