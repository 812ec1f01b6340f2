"""Every DynamoDB sink parses botocore's models once per process, yet keeps its own session.

A copy opens a sink per worker and a daemon one per applier; each fresh botocore session parsed
the service models and endpoint rules again (0.15 s of CPU per sink, measured). No server is
needed: creating a client does not connect.
"""

from __future__ import annotations

from connectors.sinks.dynamodb import DynamoDBSink


def _sink(name: str) -> DynamoDBSink:
    return DynamoDBSink(
        name,
        "table",
        "us-east-1",
        endpoint_url="http://127.0.0.1:9",
        s3_bucket="bucket",
        s3_endpoint_url="http://127.0.0.1:9",
    )


def test_sinks_share_the_parsed_models_but_not_their_sessions() -> None:
    first, second = _sink("a"), _sink("b")
    try:
        assert first._session is not second._session
        loader = first._session._session.get_component("data_loader")
        assert second._session._session.get_component("data_loader") is loader
        # What the loader parsed for the first sink is served from its cache to the second.
        assert loader.load_service_model("dynamodb", "service-2") is loader.load_service_model(
            "dynamodb", "service-2"
        )
    finally:
        first.close()
        second.close()
