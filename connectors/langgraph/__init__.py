"""LangGraph checkpoint logic every source and sink shares, without I/O.

``forms``: the split (PostgresSaver) and whole (SqliteSaver, DynamoDB) forms of a checkpoint and
the conversions between them. ``blobs``: the blob store interface and its byte-bounded cache.
``batch``: planning a batch of change events into its net effect for any target.
"""
