"""Adapters to the outside world: where items come from (sources) and where they are kept (milvus)."""
